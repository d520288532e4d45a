"""Faults: a killed adapter or acquisition replica, a segmenter restarted mid-raster, a corrupt model, a full or
read-only store, damaged store records and a full job store, idle client streams.

Each fault returns what a user would ask after it: how many requests were
sent, which codes came back, and what was lost (sessions, clicks: must be 0).
"""
from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import numpy as np

from benchmarks.reliability.load import percentiles
from tests.support.processes import ServiceProcess, adapter_args, model_args
from dial.files import TEMPORARY_NAME
from tests.support.synthetic import make_scene
from tests.support.ports import free_port


def adapter_replica_killed(repo: Path, model: str, scratch: Path, clients: int = 4, clicks: int = 12,
                           image_px: int = 256) -> dict:
    """Two replicas share one store; clients are mid-session when one replica gets kill -9.

    Each client's channel knows both replicas (``ipv4:`` with two addresses,
    as a Kubernetes Service would route): half start on each. A call that
    fails because its replica died was not acknowledged, so the client reads
    its session back (a read is safe to repeat) and adds the click again only
    if it is missing. At the end every acknowledged click must be in its
    session, in order, read from the surviving replica.
    """
    from dial_client import AdapterClient, Click, RetryPolicy
    from dial_client.errors import DialError

    store = scratch / "sessions-shared"
    replicas = [ServiceProcess("adapter", adapter_args(repo, scratch / f"cache-r{i}", store, steps=3))
                for i in range(2)]
    for replica in replicas:
        replica.wait_serving()
    victim, survivor = replicas
    image = make_scene(image_px, image_px, seed=11).image
    codes: Counter = Counter()
    recoveries: list[float] = []
    progress = Counter()
    lock = threading.Lock()
    sessions: dict[str, list] = {}
    killed = threading.Event()
    retry = RetryPolicy(max_attempts=8, initial_backoff_seconds=0.2, max_backoff_seconds=2.0)

    def note(code: str) -> None:
        with lock:
            codes[code] += 1

    def client_run(index: int) -> None:
        first, second = (victim, survivor) if index % 2 == 0 else (survivor, victim)
        target = f"ipv4:{first.address},{second.address}"
        rng = np.random.default_rng(100 + index)
        with AdapterClient(target, timeout=120, retries=retry, caller=f"fault-{index}") as client:
            session = client.create_session(image, model=model)
            note("OK")
            acknowledged: list = []
            with lock:
                sessions[session.session_id] = (f"fault-{index}", acknowledged)
            for k in range(clicks):
                click = Click(int(rng.integers(image_px)), int(rng.integers(image_px)), int(rng.integers(2)))
                while True:
                    started = time.monotonic()
                    try:
                        session.add_clicks([click])
                        note("OK")
                        break
                    except DialError as error:
                        note(error.code.name)
                        # Not acknowledged; it may still have reached the store before the replica died.
                        kept = session.get().clicks
                        note("OK")
                        if len(kept) > len(acknowledged) and kept[len(acknowledged)] == click:
                            break
                    finally:
                        if killed.is_set():
                            recoveries.append(time.monotonic() - started)
                acknowledged.append(click)
                with lock:
                    progress[index] += 1
                if k % 4 == 3:
                    try:
                        session.adapt()
                        note("OK")
                    except DialError as error:
                        note(error.code.name)

    threads = [threading.Thread(target=client_run, args=(i,)) for i in range(clients)]
    try:
        for thread in threads:
            thread.start()
        # Kill when every client is mid-session: a few clicks acknowledged, most still to come.
        deadline = time.monotonic() + 600
        while min((progress[i] for i in range(clients)), default=0) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            clicks_at_kill = sum(progress.values())
        killed.set()
        victim.kill9()
        for thread in threads:
            thread.join(900)
        lost_sessions = lost_clicks = 0
        for session_id, (caller, acknowledged) in sessions.items():
            with AdapterClient(survivor.address, timeout=60, caller=caller) as client:
                try:
                    kept = client.get_session(session_id).info.clicks
                except DialError:
                    lost_sessions += 1
                    kept = ()
            lost_clicks += len(acknowledged) - sum(1 for a, b in zip(acknowledged, kept) if a == b)
        return {
            "fault": "kill -9 of one of two adapter replicas sharing a session store, clients mid-session",
            "clients": clients, "sessions": len(sessions),
            "clicks_acknowledged": sum(len(a) for _, a in sessions.values()),
            "requests": sum(codes.values()), "codes": dict(codes),
            "sessions_lost": lost_sessions, "clicks_lost": lost_clicks,
            "clicks_acknowledged_at_the_kill": clicks_at_kill, "add_clicks_calls_after_the_kill": len(recoveries),
            "call_ms_after_the_kill": percentiles(recoveries),
            "survivor_serving": survivor.serving(),
        }
    finally:
        for replica in replicas:
            replica.stop()


def acquisition_replica_killed(repo: Path, model: str, scratch: Path, rasters: int = 8, image_px: int = 512,
                               lease_seconds: float = 3.0, strategy: str = "mc_dropout") -> dict:
    """Two replicas share one job store; the one running a queue job gets kill -9 mid-job.

    The job must still finish, on the survivor, once the dead replica's lease
    lapses, and its queue must be the one a fresh job over the same rasters
    gives. Which replica holds the job is read from the store, as an operator
    would.
    """
    from dial_client import AcquisitionClient
    from dial_services.acquisition.job_store import JobStore
    from dial.imagery.raster import GeoTiffWriter

    folder = scratch / "queue-rasters"
    folder.mkdir(exist_ok=True)
    uris = []
    for i in range(rasters):
        image = make_scene(image_px, image_px, seed=40 + i).image
        path = folder / f"scene-{i}.tif"
        with GeoTiffWriter(path, height=image_px, width=image_px, bands=image.shape[2], dtype=str(image.dtype),
                           geo=None) as writer:
            writer.write(image, 0, 0)
        uris.append(str(path))
    store = scratch / "queue-jobs-shared"
    args = [*model_args(repo, scratch / "cache-acq"), "--raster-roots", str(folder), "--job-store", str(store),
            "--intra-op-threads", "1"]
    env = {"DIAL_JOB_LEASE_SECONDS": str(lease_seconds), "OMP_NUM_THREADS": "1"}
    replicas = [ServiceProcess("acquisition", args, env=env) for _ in range(2)]
    for replica in replicas:
        replica.wait_serving()
    first, second = replicas
    options = dict(model=model, strategy=strategy, patch_size=image_px // 4)
    try:
        with AcquisitionClient(first.address, timeout=120, caller="pipeline") as client:
            job = client.submit_queue(uris, **options)
        job_id = job.name.split("/")[1]
        holder = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = JobStore(store).read(job_id)
            if record.state == "RUNNING" and record.rasters_done >= 1 and record.claims:
                holder = record.claims[0][1]  # every replica ranks rasters of the job: kill one of them
                break
            if record.state not in ("PENDING", "RUNNING"):
                raise RuntimeError(f"the job was {record.state} before it could be killed mid-job; "
                                   "give it more or larger rasters")
            time.sleep(0.02)
        victim = next(r for r in replicas if f"-{r.process.pid}-" in holder)
        survivor = second if victim is first else first
        done_at_kill = JobStore(store).read(job_id).rasters_done
        victim.kill9()
        killed = time.monotonic()
        with AcquisitionClient(survivor.address, timeout=120, caller="pipeline") as client:
            taken_over = None
            while time.monotonic() - killed < 300:
                state = client.job(job.name)
                # Taken over once no raster is claimed by the killed replica any more.
                if taken_over is None and all(h != holder for _, h, _ in JobStore(store).read(job_id).claims):
                    taken_over = time.monotonic() - killed
                if state.finished:
                    break
                time.sleep(0.05)
            finished = time.monotonic() - killed
            queue = [q for page in client.queue(state) for q in page]
            fresh = client.submit_queue(uris, **options)
            while not (fresh := client.job(fresh.name)).finished:
                time.sleep(0.05)
            reference = [q for page in client.queue(fresh) for q in page]
        same = [(q.raster_uri, q.patch.window, round(q.patch.score, 6)) for q in queue] == \
            [(q.raster_uri, q.patch.window, round(q.patch.score, 6)) for q in reference]
        return {"fault": f"kill -9 of the acquisition replica running a queue job ({rasters} rasters of "
                         f"{image_px}² px, {strategy}), lease {lease_seconds} s",
                "rasters": rasters, "rasters_done_at_kill": done_at_kill, "state": state.state,
                "taken_over_after_s": None if taken_over is None else round(taken_over, 2),
                "finished_after_s": round(finished, 2), "patches": len(queue),
                "same_queue_as_a_fresh_job": same, "jobs_lost": 0 if state.state == "SUCCEEDED" else 1,
                "survivor_serving": survivor.serving()}
    finally:
        for replica in replicas:
            replica.stop()


def segmenter_restarted_mid_raster(repo: Path, model: str, scratch: Path, size_px: int = 3000) -> dict:
    """kill -9 of the segmenter while it writes a class map; a new process comes up on the same port.

    The client's retry policy carries the call over the restart (the job runs
    again from the start, and the server writes its output atomically), so
    the caller gets one complete GeoTIFF with the input's georeference.
    """
    import rasterio
    from rasterio.transform import from_origin

    from dial_client import RetryPolicy, SegmenterClient

    root = scratch / "rasters"
    root.mkdir(parents=True, exist_ok=True)
    source, output = root / "scene.tif", root / "scene-classes.tif"
    scene = make_scene(size_px, size_px, seed=5).image
    transform = from_origin(500000.0, 5000000.0, 0.5, 0.5)
    with rasterio.open(source, "w", driver="GTiff", height=size_px, width=size_px, count=scene.shape[2],
                       dtype="uint8", crs="EPSG:32631", transform=transform, tiled=True) as dst:
        dst.write(np.moveaxis(scene, 2, 0))
    args = [*model_args(repo, scratch / "cache-seg-restart"), "--raster-roots", str(root)]
    server = ServiceProcess("segmenter", args)
    server.wait_serving()
    progress: list[tuple[int, int]] = []
    outcome: dict = {}

    def run() -> None:
        policy = RetryPolicy(max_attempts=10, initial_backoff_seconds=0.5, max_backoff_seconds=5.0)
        with SegmenterClient(server.address, retries=policy, raster_timeout=1800) as client:
            started = time.monotonic()
            try:
                client.predict_raster(str(source), model=model, output_uri=str(output), overwrite=True,
                                      on_progress=lambda done, total: progress.append((done, total)))
                outcome["code"] = "OK"
            except Exception as error:  # noqa: BLE001 - reported, not hidden
                outcome["code"] = getattr(getattr(error, "code", None), "name", repr(error))
            outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    replacement = None
    try:
        thread.start()
        while not progress or progress[-1][0] < max(2, progress[-1][1] // 3):
            if not thread.is_alive():
                break
            time.sleep(0.05)
        done_at_kill = progress[-1] if progress else (0, 0)
        server.kill9()
        replacement = ServiceProcess("segmenter", args, port=server.port)
        restart_s = replacement.wait_serving()
        thread.join(1800)
        with rasterio.open(source) as src, rasterio.open(output) as out:
            georeference_kept = src.crs == out.crs and src.transform == out.transform
            shape_kept = (out.height, out.width) == (src.height, src.width)
        leftovers = sorted(p.name for p in root.iterdir() if TEMPORARY_NAME.match(p.name))
        return {
            "fault": f"kill -9 of the segmenter during PredictRaster of a {size_px}×{size_px} GeoTIFF, "
                     "restarted on the same port",
            "tiles_done_at_kill": list(done_at_kill), "restart_to_serving_s": round(restart_s, 1),
            "client_outcome": outcome.get("code"), "client_seconds": round(outcome.get("seconds", float("nan")), 1),
            "output_complete": shape_kept, "georeference_kept": georeference_kept,
            "partial_files_left_by_the_killed_process": leftovers,
        }
    finally:
        server.stop()
        if replacement is not None:
            replacement.stop()


def corrupt_model(repo: Path, model: str, scratch: Path) -> dict:
    """A model whose weights no longer match their checksum: start-up fails loudly, health never SERVING."""
    broken = scratch / "broken-repo"
    shutil.copytree(repo / model, broken / model)
    version = sorted((broken / model).iterdir())[-1]
    for onnx in version.glob("*.onnx"):
        onnx.unlink()
    weights = version / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    server = ServiceProcess("segmenter", model_args(broken, scratch / "cache-broken"))
    statuses = Counter()
    try:
        deadline = time.monotonic() + 120
        while server.process.poll() is None and time.monotonic() < deadline:
            statuses[server.health_status()] += 1
            time.sleep(0.1)
        exit_code = server.process.poll()
        log = server.log_tail(4000)
        message = next((line for line in log.splitlines()[::-1] if "checksum" in line or "Error" in line), "")
        return {"fault": "segmenter started on a model with truncated weights", "exit_code": exit_code,
                "health_answers_while_starting": dict(statuses), "ever_serving": statuses["SERVING"] > 0,
                "start_up_message": message.strip().replace(str(scratch), "<scratch>")[:300]}
    finally:
        server.stop()


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a small tmpfs (needs root or CAP_SYS_ADMIN); the reason on failure."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip() or f"mount exited {result.returncode}")


def _fill(volume: Path) -> Path:
    """Fill ``volume`` to its last byte with one file; that file, to free the space again."""
    filler = volume / "filler"
    try:
        with open(filler, "wb") as out:
            while True:
                out.write(b"\0" * 2**16)
                out.flush()
    except OSError as error:
        # ENOSPC at open means the store had already filled up by itself: full is what we want.
        if error.errno != errno.ENOSPC:
            raise
    return filler


def _outcomes(*calls) -> Counter:
    """Run each call once; count the status codes they end with."""
    from dial_client.errors import DialError

    codes: Counter = Counter()
    for call in calls:
        try:
            call()
            codes["OK"] += 1
        except DialError as error:
            codes[error.code.name] += 1
    return codes


def store_full_or_read_only(repo: Path, model: str, scratch: Path, image_px: int = 256) -> dict:
    """A session store on a real small tmpfs, filled up, then remounted read-only.

    The session must come out unharmed: the refused change is not applied,
    everything acknowledged before is still there, and once space returns
    the session takes changes again.
    """
    from dial_client import AdapterClient, Click

    store = scratch / "small-store"
    problem = _mount_tmpfs(store, "64m")
    if problem:
        return {"fault": "full and read-only session store", "measured": False,
                "why_not": f"cannot mount a tmpfs here ({problem}); the in-process tests inject ENOSPC and EROFS"}
    server = ServiceProcess("adapter", adapter_args(repo, scratch / "cache-store", store, steps=3))
    results: dict = {"fault": "session store on a 64 MiB tmpfs: filled to the last byte, then remounted read-only",
                     "measured": True}
    image = make_scene(image_px, image_px, seed=12).image
    try:
        server.wait_serving()
        with AdapterClient(server.address, timeout=120, retries=0, caller="store") as client:
            session = client.create_session(image, model=model)
            acknowledged = [Click(10, 10, 1)]
            session.add_clicks(acknowledged)
            session.adapt()
            before = session.predict().labels
            results["store_bytes_before_filling"] = shutil.disk_usage(store).used
            filler = _fill(store)
            codes = _outcomes(lambda: session.add_clicks([Click(20, 20, 0)]), session.adapt,
                              lambda: client.create_session(image, model=model))
            info = session.get()
            results["full"] = {"codes": dict(codes), "clicks_after": len(info.clicks),
                               "adaptations_after": info.adaptation_count,
                               "prediction_unchanged": bool(np.array_equal(session.predict().labels, before))}
            filler.unlink(missing_ok=True)
            session.add_clicks([Click(30, 30, 1)])
            acknowledged.append(Click(30, 30, 1))
            results["full"]["takes_changes_when_space_returns"] = True

            subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
            codes = _outcomes(lambda: session.add_clicks([Click(40, 40, 0)]), session.undo)
            info = session.get()
            subprocess.run(["mount", "-o", "remount,rw", str(store)], check=True)
            session.add_clicks([Click(50, 50, 1)])
            acknowledged.append(Click(50, 50, 1))
            results["read_only"] = {"codes": dict(codes), "clicks_after": len(info.clicks),
                                    "takes_changes_after_remount_rw": True}
            kept = session.get().clicks
            results["sessions_lost"] = 0
            results["clicks_acknowledged"] = len(acknowledged)
            results["clicks_lost"] = len(acknowledged) - sum(1 for a, b in zip(acknowledged, kept) if a == b)
        results["server_alive"] = server.process.poll() is None
        return results
    finally:
        server.stop()
        subprocess.run(["umount", str(store)], capture_output=True)


IDLE_TIMEOUT_S = 3.0


def _idle_raster_stream(address: str, token: str, n_bands: int, model: str, release: threading.Event) -> dict:
    """A PredictRaster stream that sends a tiles header and then nothing: the code and when it ended."""
    import grpc

    from dial_client.wire import common_pb2, segmenter_pb2, segmenter_pb2_grpc

    header = segmenter_pb2.PredictRasterRequest(header=segmenter_pb2.PredictRasterHeader(
        model=common_pb2.ModelRef(name=model), stream_tiles=True,
        tiles=segmenter_pb2.TiledRasterHeader(height=256, width=256, bands=n_bands,
                                              dtype=common_pb2.DATA_TYPE_UINT8)))

    def requests():
        yield header
        release.wait(120)

    started = time.monotonic()
    with grpc.insecure_channel(address) as channel:
        try:
            list(segmenter_pb2_grpc.SegmenterStub(channel).PredictRaster(
                requests(), timeout=120, metadata=[("authorization", f"Bearer {token}")]))
            code, details = "OK", ""
        except grpc.RpcError as error:
            code, details = error.code().name, error.details() or ""
    return {"code": code, "details": details, "seconds": time.monotonic() - started}


def idle_streams(repo: Path, model: str, scratch: Path, n_bands: int = 3) -> dict:
    """The review's starvation attack: a caller opens PredictRaster streams, sends a header and then nothing.

    First the review's own setting (four workers, four calls per caller) must
    be refused at start-up. Then, on five workers with four calls per caller:
    alice's four idle streams, while bob's Predict and the main port's health
    check must still be answered; and alice's four plus one of bob's, which take
    every worker, while the probe port must say NOT_SERVING. Every idle stream
    must end with DEADLINE_EXCEEDED after the idle timeout, and the probe must
    say SERVING again.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from dial_client import SegmenterClient
    from dial_services.common.auth import hash_token
    from tests.support.synthetic import make_scene

    tokens = scratch / "idle-tokens"
    tokens.write_text(f"alice:{hash_token('alice-idle-token')}\nbob:{hash_token('bob-idle-token')}\n")
    refused = subprocess.run([sys.executable, "-m", "dial_services.cli", "serve", "segmenter",
                              *model_args(repo, scratch / "cache-idle"), "--port", "0", "--max-workers", "4",
                              "--max-calls-per-caller", "4", "--auth-tokens-file", str(tokens)],
                             capture_output=True, text=True, timeout=120)
    refusal = (refused.stderr.strip().splitlines() or [""])[-1].replace(str(scratch), "<scratch>")[:300]
    probe_port = free_port()
    server = ServiceProcess("segmenter", [*model_args(repo, scratch / "cache-idle"), "--max-workers", "5",
                                          "--max-calls-per-caller", "4", "--auth-tokens-file", str(tokens),
                                          "--health-port", str(probe_port)],
                            env={"DIAL_STREAM_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT_S)})
    image = make_scene(64, 64, seed=13).image[..., :n_bands]
    probe = grpc.insecure_channel(f"127.0.0.1:{probe_port}")

    def probe_status(service: str = "") -> str:
        try:
            reply = health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as error:
            return error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def attack(streams: list[tuple[str, str]], during) -> dict:
        release = threading.Event()
        with futures.ThreadPoolExecutor(len(streams)) as pool:
            calls = [pool.submit(_idle_raster_stream, server.address, f"{who}-idle-token", n_bands, model, release)
                     for who, _ in streams]
            time.sleep(1.0)  # the streams are open and waiting before the bystander calls
            observed = during()
            ended = [c.result(60) for c in calls]
            release.set()
        observed["idle_stream_codes"] = dict(Counter(e["code"] for e in ended))
        observed["idle_streams_ended_after_s"] = round(max(e["seconds"] for e in ended), 1)
        observed["idle_stream_message"] = ended[0]["details"][:200]
        return observed

    def bystander_and_health() -> dict:
        started = time.monotonic()
        try:
            with SegmenterClient(server.address, timeout=IDLE_TIMEOUT_S * 0.8, retries=0, caller="bob",
                                 token="bob-idle-token") as client:
                client.predict(image, model=model)
            code = "OK"
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            code = getattr(getattr(error, "code", None), "name", type(error).__name__)
        bystander_s = time.monotonic() - started
        return {"bystander_predict": code, "bystander_seconds": round(bystander_s, 2),
                "main_port_health": server.health_status(), "probe_during": probe_status()}

    def probe_only() -> dict:
        return {"probe_during": probe_status(), "probe_liveness_during": probe_status("liveness")}

    try:
        server.wait_serving()
        one_caller = attack([("alice", "")] * 4, bystander_and_health)
        every_worker = attack([("alice", "")] * 4 + [("bob", "")], probe_only)
        time.sleep(0.5)
        return {"fault": f"PredictRaster streams that send a header and then nothing (idle timeout "
                         f"{IDLE_TIMEOUT_S:g} s, 5 workers, 4 calls per caller)",
                "review_setting_refused": refused.returncode != 0, "review_setting_message": refusal,
                "one_caller_four_streams": one_caller, "every_worker_taken": every_worker,
                "probe_after": probe_status(), "serving_after": server.serving()}
    finally:
        probe.close()
        server.stop()


def _code(call) -> str:
    return next(iter(_outcomes(call)))


def damaged_records_and_a_full_job_store(repo: Path, model: str, scratch: Path, image_px: int = 128) -> dict:
    """Shared stores under faults: a session's and a queue job's record truncated on disk, a dead replica's
    lease a day ahead, and a job store on a real small tmpfs filled to the last byte.

    A damaged record must be DATA_LOSS to its owner alone, who may remove it, while another caller's
    session and jobs go on unchanged; a job leased far ahead must still cancel; a full job store must
    answer RESOURCE_EXHAUSTED and say NOT_SERVING for dial.v1.Acquisition until it frees, then take jobs.
    """
    import grpc
    from grpc_health.v1 import health_pb2

    from dial.imagery.raster import GeoTiffWriter
    from dial.model.repository import ModelRepository
    from dial_client import AcquisitionClient, AdapterClient, Click
    from dial_client.wire import acquisition_pb2
    from dial_services.acquisition.job_store import JobRecord, JobStore

    results: dict = {"fault": "a truncated session meta.json and job.json, a dead replica's job leased a day "
                              "ahead, and a job store on an 8 MiB tmpfs filled to the last byte"}
    image = make_scene(image_px, image_px, seed=21).image
    sessions = scratch / "damaged-sessions"
    adapter = ServiceProcess("adapter", adapter_args(repo, scratch / "cache-damaged", sessions, steps=1))
    try:
        adapter.wait_serving()
        with AdapterClient(adapter.address, timeout=120, retries=0, caller="victim") as victim, \
                AdapterClient(adapter.address, timeout=120, retries=0, caller="bystander") as bystander:
            damaged = victim.create_session(image, model=model)
            kept = bystander.create_session(image, model=model)
            kept.add_clicks([Click(5, 5, 1)])
            meta = sessions / damaged.session_id / "meta.json"
            meta.write_bytes(meta.read_bytes()[:50])
            results["session"] = {
                "owner_get": _code(damaged.get), "other_caller_get": _code(lambda: bystander.get_session(damaged.name)),
                "bystander_list": _code(bystander.list_sessions),
                "bystander_create": _code(lambda: bystander.create_session(image, model=model)),
                "owner_delete": _code(damaged.delete), "owner_get_after_delete": _code(damaged.get),
                "bystander_session_unchanged": bystander.get_session(kept.name).info.clicks == (Click(5, 5, 1),)}
        results["adapter_serving_after"] = adapter.serving()
    finally:
        adapter.stop()

    folder = scratch / "damaged-rasters"
    folder.mkdir(exist_ok=True)
    uri = str(folder / "scene.tif")
    with GeoTiffWriter(uri, height=image_px, width=image_px, bands=image.shape[2], dtype=str(image.dtype),
                       geo=None) as writer:
        writer.write(image, 0, 0)
    store = scratch / "small-job-store"
    problem = _mount_tmpfs(store, "8m")
    jobs = JobStore(store)
    version = ModelRepository(repo).manifest(model).version
    now = time.time()

    def planted(job_id: str, rasters: int, **state) -> JobRecord:
        spec = acquisition_pb2.QueueJobSpec(model={"name": model, "version": version},
                                            rasters=[{"uri": uri}] * rasters, patch_size_px=image_px // 2)
        record = JobRecord(job_id, "victim", spec.SerializeToString(), (uri,) * rasters, 0, now, now, **state)
        jobs.create(record)
        return record

    broken = planted("00000000000000d1", 1)
    (store / broken.id / "job.json").write_bytes((store / broken.id / "job.json").read_bytes()[:60])
    skewed = planted("00000000000000d2", 100, state="RUNNING", claims=((0, "replica-with-a-fast-clock",
                                                                        now + 86400.0),), next_index=1)
    server = ServiceProcess("acquisition", [*model_args(repo, scratch / "cache-damaged-acq"), "--raster-roots",
                                            str(folder), "--job-store", str(store), "--intra-op-threads", "1"],
                            env={"DIAL_JOB_LEASE_SECONDS": "2", "OMP_NUM_THREADS": "1"})

    def acquisition_health() -> str:
        try:
            reply = server.health.Check(health_pb2.HealthCheckRequest(service="dial.v1.Acquisition"), timeout=2)
        except grpc.RpcError as error:
            return error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def finished(client, name: str, seconds: float = 120) -> dict:
        deadline = time.monotonic() + seconds
        while not (job := client.job(name)).finished and time.monotonic() < deadline:
            time.sleep(0.05)
        # How far it got and why it ended, so that an unexpected end says what happened.
        return {"state": job.state, "rasters_done": job.rasters_done, "error_message": job.error_message,
                "failures": [f.reason for f in job.failures[:3]]}

    try:
        server.wait_serving()
        with AcquisitionClient(server.address, timeout=120, retries=0, caller="victim") as victim, \
                AcquisitionClient(server.address, timeout=120, retries=0, caller="bystander") as bystander:
            started = time.monotonic()
            victim.cancel(f"queueJobs/{skewed.id}")
            results["lease_a_day_ahead"] = {**finished(victim, f"queueJobs/{skewed.id}", 60),
                                            "cancelled_after_s": round(time.monotonic() - started, 2)}
            if results["lease_a_day_ahead"]["state"] != "CANCELLED":
                results["lease_a_day_ahead"]["server_log"] = [
                    line for line in server.log_tail(8000).splitlines() if skewed.id in line][-5:]
            name = f"queueJobs/{broken.id}"
            results["job"] = {
                "bystander_job": finished(bystander, bystander.submit_queue([uri], model=model).name)["state"],
                "owner_get": _code(lambda: victim.job(name)), "other_caller_get": _code(lambda: bystander.job(name)),
                "owner_cancel_removes_it": _code(lambda: victim.cancel(name)),
                "owner_get_after_cancel": _code(lambda: victim.job(name))}
            if problem:
                results["full"] = {"measured": False, "why_not": f"cannot mount a tmpfs here ({problem}); the "
                                   "in-process tests inject ENOSPC"}
            else:
                kept = bystander.submit_queue([uri], model=model)
                finished(bystander, kept.name)
                filler = _fill(store)
                full = {"measured": True, "create": _code(lambda: bystander.submit_queue([uri], model=model)),
                        "health_acquisition": acquisition_health(), "health_server": server.health_status(),
                        "bystander_job_readable": _code(lambda: bystander.job(kept.name))}
                filler.unlink(missing_ok=True)
                freed = time.monotonic()
                while acquisition_health() != "SERVING" and time.monotonic() - freed < 30:
                    time.sleep(0.1)
                full["serving_again_after_s"] = round(time.monotonic() - freed, 2)
                full["health_acquisition_after"] = acquisition_health()
                full["job_after"] = finished(bystander, bystander.submit_queue([uri], model=model).name)["state"]
                results["full"] = full
        results["acquisition_serving_after"] = server.serving()
        results["server_alive"] = server.process.poll() is None
        return results
    finally:
        server.stop()
        if not problem:
            subprocess.run(["umount", str(store)], capture_output=True)
