"""The report's model figures at any crop size, and failed figures as warnings / --strict exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.checkpoint import atomic_save, make_checkpoint
from models.pretrain_heads import ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint
from models.swin_encoder import SwinEncoder
from models.swin_hyperiqa import build_swin_hyperiqa
from tests.tools.conftest import write_finetune, write_pretrain
from tools.report import main, write_report_checked


def small_crop_run(tmp_path: Path, demo_root: Path) -> Path:
    """A run folder whose models were trained at 64 px (fine-tuned) and 96 px (Stage 1)."""
    run = tmp_path / "run"
    for name in ("baseline", "pretrained"):
        folder = run / "checkpoints" / name
        write_finetune(folder, 0.7, demo_root, pretrained=name == "pretrained")
        model = build_swin_hyperiqa("micro", crop_size=64)
        config = {**model.config, "dataset": "koniq10k", "mos_range": [0.0, 100.0]}
        atomic_save(make_checkpoint("full", "micro", model.state_dict(), config, 1, {}),
                    folder / "best_model.pkl")
    write_pretrain(run / "checkpoints" / "pretrain")
    encoder = SwinEncoder("micro", crop_size=96)
    pretrained = QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features))
    atomic_save(make_encoder_checkpoint(pretrained, {}, 1, {}),
                run / "checkpoints" / "pretrain" / "swin_micro_qualiclip_pretrained.pkl")
    return run


def test_model_figures_are_drawn_at_the_models_crop_sizes(tmp_path: Path,
                                                          demo_root: Path) -> None:
    run = small_crop_run(tmp_path, demo_root)
    path, failed = write_report_checked(run)
    assert failed == {}
    assert (run / "plots" / "tsne_features.png").is_file()
    assert (run / "plots" / "activation_maps.png").is_file()
    assert "drawing failed" not in path.read_text()


def test_a_failed_figure_warns_and_fails_strict_runs(tmp_path: Path, demo_root: Path,
                                                    capsys) -> None:
    run = small_crop_run(tmp_path, demo_root)
    (run / "checkpoints" / "baseline" / "best_model.pkl").write_bytes(b"PK\x03\x04 broken")
    main(["--runs_dir", str(run)])  # without --strict: written, warned, exit status 0
    captured = capsys.readouterr()
    assert "warning: figure 'tsne' drawing failed: CheckpointError" in captured.err
    assert "with 2 failed figure(s)" in captured.out
    with pytest.raises(SystemExit) as stopped:
        main(["--runs_dir", str(run), "--strict"])
    assert stopped.value.code == 1
    assert (run / "QUALICLIP_RESULTS.md").is_file()
