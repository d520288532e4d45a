"""The reliability results as a verdict (what went wrong) and as the Markdown document in ``deploy/``."""
from __future__ import annotations

import json
import platform
import time

import psutil

# Growth of the server's RSS over the second half of a load test, on a warm
# server repeating the same work, above which we call it a leak.
LEAK_MB = 32.0
PARTS = ("load", "overload", "faults", "fuzz")


def _completed(results: dict) -> dict:
    """The results without the tests whose harness failed (those are reported as problems)."""
    return {part: ({t: r for t, r in tests.items() if "harness_error" not in r} if part in PARTS else tests)
            for part, tests in results.items()}


def verdict(results: dict) -> list[str]:
    problems = [f"{part}/{test}: the harness failed: {r['harness_error'].strip().splitlines()[-1]}"
                for part in PARTS for test, r in results.get(part, {}).items()
                if "harness_error" in r]
    results = _completed(results)
    for service, r in results.get("load", {}).items():
        if not r["serving_after"]:
            problems.append(f"load/{service}: not SERVING afterwards")
        if r["errors_by_code"]:
            problems.append(f"load/{service}: errors {r['errors_by_code']}")
        if r["rss_growth_second_half_mb"] > LEAK_MB:
            problems.append(f"load/{service}: RSS grew {r['rss_growth_second_half_mb']} MB in the second half")
        if r.get("clicks_lost") or r.get("sessions_lost"):
            problems.append(f"load/{service}: lost {r.get('sessions_lost')} sessions, {r.get('clicks_lost')} clicks")
    for service, r in results.get("overload", {}).items():
        if not (r["only_ok_or_resource_exhausted"] and r["serving_after"]):
            problems.append(f"overload/{service}: codes {r['codes']}, serving after: {r['serving_after']}")
    f = results.get("faults", {})
    if "adapter_replica_killed" in f:
        r = f["adapter_replica_killed"]
        if r["sessions_lost"] or r["clicks_lost"] or not r["survivor_serving"]:
            problems.append(f"faults/adapter: lost {r['sessions_lost']} sessions and {r['clicks_lost']} clicks")
    if "acquisition_replica_killed" in f:
        r = f["acquisition_replica_killed"]
        if r["jobs_lost"] or not (r["same_queue_as_a_fresh_job"] and r["survivor_serving"]):
            problems.append(f"faults/acquisition: job {r['state']}, same queue as a fresh job: "
                            f"{r['same_queue_as_a_fresh_job']}")
    if "segmenter_restarted_mid_raster" in f:
        r = f["segmenter_restarted_mid_raster"]
        if r["client_outcome"] != "OK" or not (r["output_complete"] and r["georeference_kept"]):
            problems.append(f"faults/segmenter restart: client got {r['client_outcome']}")
    if "corrupt_model" in f:
        r = f["corrupt_model"]
        if r["exit_code"] in (None, 0) or r["ever_serving"]:
            problems.append(f"faults/corrupt model: exit {r['exit_code']}, ever serving {r['ever_serving']}")
    if f.get("session_store", {}).get("measured"):
        r = f["session_store"]
        if r["clicks_lost"] or not r["server_alive"] or not r["full"]["prediction_unchanged"] \
                or set(r["full"]["codes"]) - {"RESOURCE_EXHAUSTED"} or set(r["read_only"]["codes"]) - {"UNAVAILABLE"}:
            problems.append(f"faults/session store: {r}")
    if "stores" in f:
        r = f["stores"]
        expected = {"session": {"owner_get": "DATA_LOSS", "other_caller_get": "NOT_FOUND", "bystander_list": "OK",
                                "bystander_create": "OK", "owner_delete": "OK", "owner_get_after_delete": "NOT_FOUND",
                                "bystander_session_unchanged": True},
                    "job": {"bystander_job": "SUCCEEDED", "owner_get": "DATA_LOSS", "other_caller_get": "NOT_FOUND",
                            "owner_cancel_removes_it": "OK", "owner_get_after_cancel": "NOT_FOUND"},
                    "lease_a_day_ahead": {"state": "CANCELLED"}}
        if r["full"]["measured"]:
            expected["full"] = {"create": "RESOURCE_EXHAUSTED", "health_acquisition": "NOT_SERVING",
                                "health_server": "SERVING", "bystander_job_readable": "OK",
                                "health_acquisition_after": "SERVING", "job_after": "SUCCEEDED"}
        wrong = {f"{part}.{k}": r[part][k] for part, want in expected.items() for k, v in want.items()
                 if r[part][k] != v}
        if wrong or not (r["server_alive"] and r["adapter_serving_after"] and r["acquisition_serving_after"]):
            problems.append(f"faults/stores: {wrong or r}")
    if "idle_streams" in f:
        r = f["idle_streams"]
        one, every = r["one_caller_four_streams"], r["every_worker_taken"]
        ended = {**one["idle_stream_codes"], **every["idle_stream_codes"]}
        if not r["review_setting_refused"] or one["bystander_predict"] != "OK" \
                or one["main_port_health"] != "SERVING" or every["probe_during"] != "NOT_SERVING" \
                or every["probe_liveness_during"] != "SERVING" or set(ended) != {"DEADLINE_EXCEEDED"} \
                or r["probe_after"] != "SERVING" or not r["serving_after"]:
            problems.append(f"faults/idle streams: {r}")
    for name, r in results.get("fuzz", {}).items():
        if r["unexpected_count"] or not (r["segmenter_serving_after"] and r["adapter_serving_after"]) \
                or not r["bystander_session_unharmed"]:
            problems.append(f"fuzz: {r['unexpected_count']} unexpected codes, bystander unharmed: "
                            f"{r['bystander_session_unharmed']}")
    return problems


def _codes(codes: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(codes.items())) or "none"


def render(results: dict, command: str) -> str:
    raw, results = results, _completed(results)
    lines = [
        "# Reliability results",
        "",
        "Load, overload, fault and fuzz tests of the three services, each a separate `dial serve` process on",
        "127.0.0.1. This file is written by the harness; reproduce it with:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {psutil.cpu_count()} CPU cores, "
        f"model `{results['model']}`; harness wall time {results['harness_seconds']} s.",
        f"Verdict: **{'no problems' if not results['problems'] else '; '.join(results['problems'])}**.",
        "",
    ]
    if "load" in results:
        lines += ["## Load", "",
                  "N clients call back to back for T seconds after a warm-up. Memory is the server's RSS after the",
                  "warm-up and after each quarter of the run; growth over the second half above "
                  f"{LEAK_MB:.0f} MB would be a leak.",
                  "",
                  "| service | calls | clients × s | requests | errors by code | p50 ms | p99 ms | ok/s "
                  "| RSS MiB, warm → each quarter | lost sessions / clicks |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for service, r in results["load"].items():
            lost = f"{r['sessions_lost']} / {r['clicks_lost']} of {r['clicks_acknowledged']}" \
                if "clicks_lost" in r else "n/a"
            lines.append(f"| {service} | {r['call']} | {r['clients']} × {r['seconds']:g} | {r['requests']} "
                         f"| {_codes(r['errors_by_code'])} | {r['latency_ms']['p50']} | {r['latency_ms']['p99']} "
                         f"| {r['throughput_per_s']} | {' → '.join(f'{x:.0f}' for x in r['server_rss_mb'])} "
                         f"| {lost} |")
        lines += ["", "Per method (p50 / p99 ms): " + "; ".join(
            f"{s} {m} {v['p50']} / {v['p99']}" for s, r in results["load"].items()
            for m, v in r["latency_ms_by_method"].items()), ""]
    if "overload" in results:
        lines += ["## Overload", ""]
        for service, r in results["overload"].items():
            lines += [f"{service} with {r['server_limit']}, {r['clients']} clients for {r['seconds']:g} s: "
                      f"{r['requests']} requests, {_codes(r['codes'])}. Refusals took p50 "
                      f"{r['refusal_latency_ms']['p50']} ms, p99 {r['refusal_latency_ms']['p99']} ms. The next call "
                      f"took {r['recovered_call_ms']} ms and health was "
                      f"{'SERVING' if r['serving_after'] else 'NOT SERVING'} afterwards; RSS "
                      f"{r['server_rss_mb']['before']} → {r['server_rss_mb']['after']} MiB.", ""]
    f = results.get("faults", {})
    if f:
        lines += ["## Faults", ""]
    if "adapter_replica_killed" in f:
        r = f["adapter_replica_killed"]
        lines += ["### kill -9 of an adapter replica", "",
                  f"{r['fault']}: {r['clients']} clients, each with a session, half starting on each replica "
                  "(a channel that knows both addresses, as a Kubernetes Service routes). A call that fails is not "
                  "acknowledged: the client reads its session back and re-adds the click only if it is missing.", "",
                  f"- requests: {r['requests']}; codes: {_codes(r['codes'])}",
                  f"- clicks acknowledged: {r['clicks_acknowledged']} in {r['sessions']} sessions",
                  f"- **sessions lost: {r['sessions_lost']}; acknowledged clicks lost: {r['clicks_lost']}**",
                  f"- calls made after the kill took p50 {r['call_ms_after_the_kill']['p50']} ms, p99 "
                  f"{r['call_ms_after_the_kill']['p99']} ms (retries included)", ""]
    if "acquisition_replica_killed" in f:
        r = f["acquisition_replica_killed"]
        lines += ["### kill -9 of the acquisition replica running a queue job", "",
                  f"{r['fault']}. Two replicas share one job store; the job was submitted to one and the replica "
                  f"holding it (read from the store) was killed with {r['rasters_done_at_kill']} of {r['rasters']} "
                  "rasters ranked.", "",
                  f"- another replica took the job over {r['taken_over_after_s']} s after the kill and finished it "
                  f"{r['finished_after_s']} s after the kill: **{r['state']}**, jobs lost: {r['jobs_lost']}",
                  f"- its queue ({r['patches']} patches) is the queue of a fresh job over the same rasters: "
                  f"{r['same_queue_as_a_fresh_job']}", ""]
    if "segmenter_restarted_mid_raster" in f:
        r = f["segmenter_restarted_mid_raster"]
        lines += ["### Segmenter restarted during a whole-raster job", "",
                  f"{r['fault']}. Tiles done at the kill: {r['tiles_done_at_kill'][0]} of "
                  f"{r['tiles_done_at_kill'][1]}; the new process was SERVING after {r['restart_to_serving_s']} s. "
                  f"The client (retry policy: UNAVAILABLE, exponential backoff) got **{r['client_outcome']}** after "
                  f"{r['client_seconds']} s; output complete: {r['output_complete']}; CRS and transform kept: "
                  f"{r['georeference_kept']}. Partial files left by the killed process: "
                  f"{r['partial_files_left_by_the_killed_process'] or 'none'}.", ""]
    if "corrupt_model" in f:
        r = f["corrupt_model"]
        lines += ["### Corrupt model file", "",
                  f"{r['fault']}: the process exited with status {r['exit_code']}; health answers while it was "
                  f"starting: {_codes(r['health_answers_while_starting'])} (ever SERVING: {r['ever_serving']}). "
                  f"Its last words: `{r['start_up_message']}`", ""]
    if "session_store" in f:
        r = f["session_store"]
        lines += ["### Full and read-only session store", ""]
        if not r["measured"]:
            lines += [f"Not measured here: {r['why_not']}.", ""]
        else:
            full, ro = r["full"], r["read_only"]
            lines += [f"{r['fault']}.", "",
                      f"- full: AddClicks, Adapt and CreateSession answered {_codes(full['codes'])}; the session kept "
                      f"{full['clicks_after']} click(s) and {full['adaptations_after']} adaptation(s), its prediction "
                      f"unchanged: {full['prediction_unchanged']}; it took changes again once space returned.",
                      f"- read-only: AddClicks and UndoClick answered {_codes(ro['codes'])}; the session kept "
                      f"{ro['clicks_after']} click(s) and took changes again after the remount.",
                      f"- acknowledged clicks lost: {r['clicks_lost']} of {r['clicks_acknowledged']}; server alive: "
                      f"{r['server_alive']}", ""]
    if "stores" in f:
        r = f["stores"]
        s, j, lease, full = r["session"], r["job"], r["lease_a_day_ahead"], r["full"]
        lines += ["### Damaged records, a lease a day ahead, a full job store", "",
                  f"{r['fault']}.", "",
                  f"- damaged session: its owner's GetSession {s['owner_get']}, another caller's "
                  f"{s['other_caller_get']}; the bystander's ListSessions {s['bystander_list']} and CreateSession "
                  f"{s['bystander_create']}, its session unchanged: {s['bystander_session_unchanged']}; the owner's "
                  f"DeleteSession {s['owner_delete']}, then GetSession {s['owner_get_after_delete']}.",
                  f"- damaged queue job: the bystander's new job {j['bystander_job']}; the owner's GetQueueJob "
                  f"{j['owner_get']}, another caller's {j['other_caller_get']}; the owner's CancelQueueJob "
                  f"{j['owner_cancel_removes_it']} (removes it), then GetQueueJob {j['owner_get_after_cancel']}.",
                  f"- a dead replica's RUNNING job leased a day ahead: CancelQueueJob, then **{lease['state']}** "
                  f"after {lease['cancelled_after_s']} s."]
        if full["measured"]:
            lines += [f"- job store full: CreateQueueJob {full['create']}; health of dial.v1.Acquisition "
                      f"{full['health_acquisition']}, of the server {full['health_server']}; an existing job read "
                      f"{full['bystander_job_readable']}. Space freed: SERVING again after "
                      f"{full['serving_again_after_s']} s, the next job {full['job_after']}."]
        else:
            lines += [f"- job store full: not measured here: {full['why_not']}."]
        alive = r["server_alive"] and r["adapter_serving_after"] and r["acquisition_serving_after"]
        lines += [f"- processes alive and SERVING afterwards: {alive}", ""]
    if "idle_streams" in f:
        r = f["idle_streams"]
        one, every = r["one_caller_four_streams"], r["every_worker_taken"]
        lines += ["### Idle client streams", "",
                  f"{r['fault']}. The review's setting (4 workers, 4 calls per caller) refused at start-up: "
                  f"{r['review_setting_refused']} (`{r['review_setting_message']}`).", "",
                  f"- one caller's four idle streams: the other caller's Predict answered {one['bystander_predict']} "
                  f"in {one['bystander_seconds']} s, the main port's health {one['main_port_health']}, the probe "
                  f"{one['probe_during']}; the streams ended {_codes(one['idle_stream_codes'])} after "
                  f"{one['idle_streams_ended_after_s']} s (`{one['idle_stream_message']}`).",
                  f"- five idle streams taking every worker: the probe said {every['probe_during']} (liveness "
                  f"{every['probe_liveness_during']}); the streams ended {_codes(every['idle_stream_codes'])} after "
                  f"{every['idle_streams_ended_after_s']} s; the probe said {r['probe_after']} afterwards.", ""]
    for name, r in results.get("fuzz", {}).items():
        lines += ["## Fuzzing", "",
                  f"{r['requests']} malformed requests (seed {r['seed']}): random bytes in image fields, extreme "
                  "shapes, unknown dtypes and enum values, NaN/infinite coordinates and transforms, click lists "
                  "past the limit, hostile model and session names, another caller's session.", "",
                  f"- segmenter Predict: {_codes(r['codes']['segmenter'])}",
                  f"- adapter CreateSession/AddClicks/Adapt: {_codes(r['codes']['adapter'])}",
                  f"- codes outside the client-error set (INTERNAL, UNKNOWN, ...): {r['unexpected_count']}",
                  f"- both servers SERVING afterwards: {r['segmenter_serving_after'] and r['adapter_serving_after']}",
                  f"- a bystander session (another caller) unchanged, clicks and prediction: "
                  f"{r['bystander_session_unharmed']}", ""]
    lines += ["## Raw results", "", "```json", json.dumps(raw, indent=1), "```", ""]
    return "\n".join(lines)
