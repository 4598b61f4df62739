"""The two fixed-shape per-frame graphs: torch.export and ONNX (run in ONNX Runtime) match eager fp32."""

import pytest
import torch
from reference import rel_l2

from lia_live.backends.export import MotionEncoderGraph, SynthesisGraph, export_onnx, export_program, feature_shapes
from lia_live.imaging import to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def real_inputs(ref_generator, astronaut):
    """Motion input: a driving crop; synthesis input: the astronaut's latent moved by that crop's motion."""
    g = ref_generator
    src = to_tensor(astronaut, 256)
    drv = torch.flip(to_tensor(astronaut[40:472, 60:492], 256), dims=(3,))
    with torch.no_grad():
        wa, feats = g.enc.net_app(src)
        latent = wa + g.enc.enc_motion(drv) @ g.dec.direction.basis().t()  # (1, 512)
    return (drv,), (latent, *feats)


def test_graph_wrappers_are_the_models_per_frame_path(ref_generator, real_inputs):
    g = ref_generator
    (drv,), synth_in = real_inputs
    assert [tuple(f.shape) for f in synth_in[1:]] == feature_shapes(g)
    with torch.no_grad():
        alpha = MotionEncoderGraph(g)(drv)
        torch.testing.assert_close(alpha, g.enc.enc_motion(drv), rtol=0, atol=0)
        img = SynthesisGraph(g)(*synth_in)
        torch.testing.assert_close(img, g.dec.synthesize(synth_in[0], list(synth_in[1:])), rtol=0, atol=0)
    assert alpha.shape == (1, 20) and img.shape == (1, 3, 256, 256)


def test_torch_export_programs_match_eager(ref_generator, real_inputs):
    g = ref_generator
    for graph, inputs in ((MotionEncoderGraph(g), real_inputs[0]), (SynthesisGraph(g), real_inputs[1])):
        prog = export_program(graph, inputs)
        assert isinstance(prog, torch.export.ExportedProgram)
        with torch.no_grad():
            want = graph(*inputs)
            got = prog.module()(*inputs)
        assert rel_l2(got.numpy(), want.numpy()) <= 1e-4
        # per-frame graphs hold no QR (Q is precomputed) and take exactly the declared tensors
        targets = {str(n.target) for n in prog.graph.nodes if n.op == "call_function"}
        assert not any("linalg_qr" in t for t in targets)
        assert len(prog.graph_signature.user_inputs) == len(inputs)


def test_onnx_graphs_run_in_onnxruntime_and_match_eager(ref_generator, real_inputs, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    g = ref_generator
    paths = export_onnx(g, tmp_path)
    for name, graph, inputs in (("motion", MotionEncoderGraph(g), real_inputs[0]),
                                ("synthesis", SynthesisGraph(g), real_inputs[1])):
        model = onnx.load(str(paths[name]), load_external_data=False)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        sess = ort.InferenceSession(str(paths[name]), providers=["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        assert [tuple(i.shape) for i in sess.get_inputs()] == [tuple(t.shape) for t in inputs]  # static
        got = sess.run(None, feed)[0]
        with torch.no_grad():
            want = graph(*inputs).numpy()
        r = rel_l2(got, want)
        assert r <= 1e-4, f"{name}: ONNX Runtime vs eager rel L2 {r:.2e}"


def test_export_onnx_rejects_old_opsets(tiny_generator, tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_generator, tmp_path, opset=16)
