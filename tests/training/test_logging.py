from facellm.training.logging import MetricsLog, read_metrics, save_loss_curve


def test_resuming_cuts_the_log_back_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.write({"step": 1, "loss": 2.0})
    offset = log.offset  # a checkpoint taken here
    log.write({"step": 2, "loss": 1.5})  # written by the run that was killed afterwards
    log.close()

    resumed = MetricsLog(path, resume_offset=offset)
    resumed.write({"step": 2, "loss": 1.4, "note": "ü"})
    resumed.close()
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.4, "note": "ü"}]


def test_loss_curve_is_a_png(tmp_path):
    path = save_loss_curve([{"step": 1, "loss": 2.0}, {"step": 1, "eval": {}}, {"step": 2, "loss": 1.0}], tmp_path / "loss.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
