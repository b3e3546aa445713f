"""The training-curve figure reads metrics.csv (train and validation rows) and writes a PNG."""

from flowforge.viz.training_curve import save_training_curve

HEADER = "step,event,elapsed_s,lr,train_loss,train_bpd,valid_bpd\n"


def test_training_curve_from_metrics_csv(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(HEADER + "50,train,30,0.001,5.0,5.0,\n100,train,60,0.001,4.0,4.0,\n"
                                     "100,valid,60,,,,4.2\n")
    out = save_training_curve(tmp_path / "curve.png", {"run": run, "missing": tmp_path / "none"})
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG"
