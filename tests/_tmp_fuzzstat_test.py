import collections, sys
sys.path.insert(0, "tests")
import test_fuzz_segmenter as t
from hypothesis import given, settings, event
import grpc
counts = collections.Counter()
from test_fuzz_segmenter import fuzz_target  # noqa
def test_stats(fuzz_target):
    stub, health, manifest, _ = fuzz_target
    @settings(max_examples=50, deadline=None)
    @given(image=t.images(manifest), click_list=t.clicks(), model=t.st.sampled_from(["tiny","tiny","tiny","","missing"]))
    def check(image, click_list, model):
        req = t.segmenter_pb2.PredictRequest(model=t.common_pb2.ModelRef(name=model), image=image, clicks=click_list)
        try:
            stub.Predict(req, timeout=60); counts["OK"] += 1
        except grpc.RpcError as e:
            counts[e.code().name + " " + (e.details() or "")[:60]] += 1
    check()
    print(counts.most_common(20))
