"""Faults and fuzzing against real ``dial serve`` processes, through the reliability harness.

The harness (``benchmarks/reliability``) writes the results document in
``deploy/``; these tests run the same code at a smaller scale on the tiny
model, so CI checks what the document claims.
"""
from __future__ import annotations

import pytest

from benchmarks.reliability import faults, fuzz
from benchmarks.reliability.report import render, verdict


def test_killing_one_of_two_adapter_replicas_loses_no_acknowledged_click(tiny_repo, tmp_path):
    result = faults.adapter_replica_killed(tiny_repo, "tiny", tmp_path, clients=2, clicks=8, image_px=96)
    assert result["sessions"] == 2 and result["clicks_acknowledged"] == 16
    assert result["sessions_lost"] == 0 and result["clicks_lost"] == 0
    assert result["survivor_serving"]
    # The kill really happened mid-session: clicks were acknowledged before it and made after it. (Whether
    # the client sees an UNAVAILABLE depends on timing: gRPC retries a call that never reached the dead
    # replica transparently, on the other address.)
    assert 0 < result["clicks_acknowledged_at_the_kill"] < result["clicks_acknowledged"], result
    assert result["add_clicks_calls_after_the_kill"] >= 1, result


def test_killing_the_acquisition_replica_running_a_queue_job_loses_no_job(tiny_repo, tmp_path):
    result = faults.acquisition_replica_killed(tiny_repo, "tiny", tmp_path, rasters=6, image_px=384,
                                               lease_seconds=1.0)
    assert 1 <= result["rasters_done_at_kill"] < result["rasters"], "the replica must be killed mid-job"
    assert result["state"] == "SUCCEEDED" and result["jobs_lost"] == 0
    assert result["taken_over_after_s"] is not None  # by the survivor, not by a restart of the victim
    assert result["same_queue_as_a_fresh_job"] and result["patches"] == 6 * 16
    assert result["survivor_serving"]


def test_a_raster_job_survives_a_segmenter_restart_through_client_retries(tiny_repo, tmp_path):
    result = faults.segmenter_restarted_mid_raster(tiny_repo, "tiny", tmp_path, size_px=1200)
    done, total = result["tiles_done_at_kill"]
    assert 0 < done < total, "the server must be killed mid-job"
    assert result["client_outcome"] == "OK"
    assert result["output_complete"] and result["georeference_kept"]


def test_a_corrupt_model_fails_start_up_and_never_reports_serving(tiny_repo, tmp_path):
    result = faults.corrupt_model(tiny_repo, "tiny", tmp_path)
    assert result["exit_code"] not in (None, 0)
    assert not result["ever_serving"]
    assert "checksum" in result["start_up_message"]
    # ... and the results document says so.
    text = render({"model": "tiny:1", "parts": ["faults"], "faults": {"corrupt_model": result},
                   "harness_seconds": 1.0, "problems": []}, "python -m benchmarks.reliability faults")
    assert "python -m benchmarks.reliability faults" in text
    assert f"exited with status {result['exit_code']}" in text


def test_idle_streams_neither_starve_a_bystander_nor_fool_the_probe(tiny_repo, tiny_manifest, tmp_path):
    result = faults.idle_streams(tiny_repo, "tiny", tmp_path, n_bands=tiny_manifest.n_bands)
    assert result["review_setting_refused"] and "--max-workers" in result["review_setting_message"]
    one, every = result["one_caller_four_streams"], result["every_worker_taken"]
    assert one["bystander_predict"] == "OK" and one["main_port_health"] == "SERVING"
    assert every["probe_during"] == "NOT_SERVING" and every["probe_liveness_during"] == "SERVING"
    assert one["idle_stream_codes"] == {"DEADLINE_EXCEEDED": 4}
    assert every["idle_stream_codes"] == {"DEADLINE_EXCEEDED": 5}
    assert result["probe_after"] == "SERVING" and result["serving_after"]
    assert verdict({"faults": {"idle_streams": result}}) == []


def test_damaged_records_and_a_full_job_store_harm_no_bystander(tiny_repo, tmp_path):
    result = faults.damaged_records_and_a_full_job_store(tiny_repo, "tiny", tmp_path, image_px=96)
    assert result["session"]["owner_get"] == "DATA_LOSS" and result["session"]["other_caller_get"] == "NOT_FOUND"
    assert result["job"]["owner_get"] == "DATA_LOSS" and result["job"]["bystander_job"] == "SUCCEEDED"
    assert result["lease_a_day_ahead"]["state"] == "CANCELLED", result["lease_a_day_ahead"]
    if result["full"]["measured"]:  # a real tmpfs needs root
        assert result["full"]["create"] == "RESOURCE_EXHAUSTED"
        assert result["full"]["health_acquisition_after"] == "SERVING"
    assert verdict({"faults": {"stores": result}}) == []


def test_malformed_requests_get_client_errors_and_leave_other_sessions_alone(tiny_repo, tiny_manifest, tmp_path):
    result = fuzz.fuzz(tiny_repo, "tiny", tmp_path, tiny_manifest.n_bands, requests=120, seed=1)
    assert result["unexpected_count"] == 0, result["unexpected_codes"]
    assert result["segmenter_serving_after"] and result["adapter_serving_after"]
    assert result["bystander_session_unharmed"]
    # The corpus must reach both outcomes on both services, or it tests nothing.
    for service in ("segmenter", "adapter"):
        assert result["codes"][service].get("INVALID_ARGUMENT", 0) > 0
        assert result["codes"][service].get("OK", 0) > 0, result["codes"]


@pytest.mark.parametrize("broken, expected", [
    ({"faults": {"adapter_replica_killed": {"sessions_lost": 0, "clicks_lost": 2, "survivor_serving": True}}},
     "faults/adapter"),
    ({"fuzz": {"f": {"unexpected_count": 1, "segmenter_serving_after": True, "adapter_serving_after": True,
                     "bystander_session_unharmed": True}}}, "fuzz"),
    ({"faults": {"acquisition_replica_killed": {"jobs_lost": 1, "state": "RUNNING", "survivor_serving": True,
                                                "same_queue_as_a_fresh_job": False}}}, "faults/acquisition"),
    ({"faults": {"corrupt_model": {"harness_error": "Traceback\nRuntimeError: boom"}}}, "harness failed"),
])
def test_the_verdict_names_every_failure(broken, expected):
    problems = verdict({"model": "m:1", **broken})
    assert len(problems) == 1 and expected in problems[0]
