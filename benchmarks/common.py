"""What the benchmarks share: the model they measure and report files."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def benchmark_repo(workdir: Path) -> tuple[Path, str]:
    """The shipped landcover model, or a same-architecture random one if it is absent."""
    shipped = ROOT / "models"
    if (shipped / "landcover").is_dir():
        return shipped, "landcover"
    from dial.clicks import ClickEncoding
    from dial.model.manifest import BandNorm, Manifest, ModelClass
    from dial.model.network import build_network
    from dial.model.repository import ModelRepository

    manifest = Manifest(name="bench", version="1", architecture="Linknet", encoder="mobilenet_v2",
                        classes=tuple(ModelClass(f"c{i}", "#000000") for i in range(6)),
                        bands=tuple(BandNorm(n, 100.0, 50.0) for n in ("red", "green", "blue")),
                        input_dtype="uint8", click_encoding=ClickEncoding(20.0))
    ModelRepository(workdir / "models").save(build_network("Linknet", "mobilenet_v2", 9, 6), manifest)
    return workdir / "models", "bench"


def write_report(report: dict, path: str | Path) -> None:
    """Write the JSON report and echo it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
