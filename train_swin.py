"""Stage 2: fine-tune Swin-HyperIQA on an IQA dataset (validation-selected, test scored once).

Example:
    python train_swin.py --dataset koniq10k --model_name swin_base_koniq --model_size base \\
        --pretrained_encoder checkpoints/<pretrain run>/swin_base_qualiclip_pretrained.pkl \\
        --lr_encoder_pretrained 1e-6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import (
    add_common_args,
    add_switch,
    build_parser,
    command_line,
    label_fraction,
    non_negative_int,
    parse_with_config,
    positive_int,
    run_script,
    split_ratios,
)
from common.vocabulary import (
    ATTENTION_SCOPES,
    GEOMETRIES,
    HEAD_POOLINGS,
    MODEL_SELECTIONS,
    OPTIMIZER_CHOICES,
    SCHEDULER_CHOICES,
)
from engine.protocols import DEFAULT_PROTOCOL, PROTOCOL_CHOICES, preset_help


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of train_swin.py (defaults from the experiment plan)."""
    parser = build_parser(__doc__.splitlines()[0], prog=Path(__file__).name)
    parser.add_argument("--protocol", choices=PROTOCOL_CHOICES, default=DEFAULT_PROTOCOL,
                        help="preset of the flags marked 'default from --protocol' (README, "
                        "'Fine-tuning protocols'); plan: the experiment plan with the "
                        "references' crops per image, LDA rate and attention placement; "
                        "hyperiqa: SSL92/hyperIQA's recipe; smart: the public Swin-HyperIQA's "
                        "final settings. A flag given explicitly overrides its preset value")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", "--database", dest="dataset", default="koniq10k",
                      help="koniq10k, spaq, kadid10k, agiqa3k, livec (or an alias) or csv:PATH")
    data.add_argument("--split", choices=("official", "random"), default="official",
                      help="official split where the dataset has one (KonIQ), else random by "
                      "content; random: always the seeded random split")
    data.add_argument("--split_seed", type=int, default=0, help="seed of the random split")
    data.add_argument("--split_ratios", type=split_ratios, default=(0.7, 0.1, 0.2),
                      help="train,val,test ratios of the random split")
    data.add_argument("--resize", choices=GEOMETRIES, default=None,
                      help="aspect: KonIQ 512 wide x 384 high, SPAQ/AGIQA short side 512; "
                      "squash: 512 high x 384 wide as the references' Resize((512, 384)) "
                      + preset_help("resize"))
    data.add_argument("--crop_size", type=positive_int, default=224, help="crop side in pixels")
    data.add_argument("--train_patches", type=positive_int, default=None,
                      help="random crops per training image per epoch, each a separate "
                      "sample " + preset_help("train_patches"))
    data.add_argument("--test_patches", type=positive_int, default=None,
                      help="fixed crops per test image, scores averaged "
                      + preset_help("test_patches"))
    data.add_argument("--val_patches", type=positive_int, default=None,
                      help="fixed crops per validation image for model selection "
                      + preset_help("val_patches"))
    data.add_argument("--label_fraction", type=label_fraction, default=1.0,
                      help="train on this fraction of the training labels (a seeded subset, "
                      "the same for every model with the same --label_seed; val/test unchanged)")
    data.add_argument("--label_seed", type=int, default=0,
                      help="seed of the --label_fraction subset")
    data.add_argument("--skip_missing", action="store_true",
                      help="train without images listed in the labels but absent on disk")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name", default=None,
                       help="run folder name under --output_dir (default swin_<size>_<dataset>)")
    model.add_argument("--drop_path", type=float, default=None,
                       help="Swin stochastic depth rate " + preset_help("drop_path"))
    model.add_argument("--dropout", type=float, default=None,
                       help="dropout on the target network's input " + preset_help("dropout"))
    add_switch(model, "use_multiscale", "content vector from all four stages (LDA), else the "
               "last stage")
    add_switch(model, "use_attention", "learned per-image attention over the four stages "
               + preset_help("use_attention"), default=None)
    model.add_argument("--attention_scope", choices=ATTENTION_SCOPES, default=None,
                       help="hyper: the attention weights only the pooled maps feeding the "
                       "hyper network (references); hyper_lda: also the LDA content vector "
                       + preset_help("attention_scope"))
    model.add_argument("--lda_group", choices=("encoder", "hyper"), default=None,
                       help="learning rate of the LDA (content vector) layers: the encoder's, "
                       "as both references, or the hyper network's " + preset_help("lda_group"))
    model.add_argument("--head_pooling", choices=HEAD_POOLINGS, default=None,
                       help="mean: the hyper network and LDA layers read average-pooled stage "
                       "maps (HyperIQA); mean_std: each pooled cell also gives its spatial "
                       "standard deviation " + preset_help("head_pooling"))
    model.add_argument("--generator_gain", type=float, default=None,
                       help="scale of the initial weights of the layers generating the target "
                       "network (1: HyperIQA's kaiming init) " + preset_help("generator_gain"))
    model.add_argument("--score_norm", choices=("mean", "standardize"), default=None,
                       help="mean: the head regresses the MOS, starting at the training mean "
                       "(HyperIQA); standardize: it regresses (MOS - mean) / SD of the training "
                       "labels, mapped back to the MOS scale " + preset_help("score_norm"))
    model.add_argument("--pretrained_encoder", default=None,
                       help="Stage-1 encoder checkpoint (or a best_model.pkl) to start from")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=None,
                       help="training epochs (may be raised on --resume to train longer) "
                       + preset_help("epochs"))
    optim.add_argument("--batch_size", type=positive_int, default=None,
                       help="training crops per step per process " + preset_help("batch_size"))
    optim.add_argument("--eval_batch_size", type=positive_int, default=None,
                       help="images per evaluation batch (default: twice the training crops "
                       "per step over the crops per image)")
    optim.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, default=None,
                       help="adamw: decoupled weight decay; adam: decay added to the gradient "
                       + preset_help("optimizer"))
    optim.add_argument("--lr", type=float, default=None,
                       help="encoder learning rate " + preset_help("lr"))
    optim.add_argument("--lr_ratio", type=float, default=None,
                       help="hyper network learning rate = lr x lr_ratio "
                       + preset_help("lr_ratio"))
    optim.add_argument("--lr_hyper", type=float, default=None,
                       help="explicit hyper network learning rate (overrides --lr_ratio)")
    optim.add_argument("--lr_encoder_pretrained", type=float, default=None,
                       help="encoder learning rate when --pretrained_encoder is given "
                       + preset_help("lr_encoder_pretrained") + "; None: --lr")
    optim.add_argument("--weight_decay", type=float, default=None,
                       help="weight decay (none on norms, biases and position tables unless "
                       "--decay_all) " + preset_help("weight_decay"))
    add_switch(optim, "decay_all", "weight decay on every parameter, norms and biases too, as "
               "both reference codes " + preset_help("decay_all"), default=None)
    optim.add_argument("--scheduler", choices=SCHEDULER_CHOICES, default=None,
                       help="hyperiqa: HyperIQA's solver: hyper rate lr x ratio for epochs 1-7, "
                       "/ 10 for 8-10, then lr / 10 and lr / 100 (3 epochs each), encoder "
                       "constant, moments reset each epoch " + preset_help("scheduler"))
    optim.add_argument("--warmup_epochs", type=float, default=None,
                       help="linear warmup epochs (fractions allowed) "
                       + preset_help("warmup_epochs"))
    optim.add_argument("--lr_step_size", type=positive_int, default=10,
                       help="step scheduler: epochs between decays")
    optim.add_argument("--lr_gamma", type=float, default=0.1, help="step scheduler: decay factor")
    optim.add_argument("--patience", type=non_negative_int, default=None,
                       help="stop after this many epochs without a validation SRCC gain (0 = "
                       "off; with --select val) " + preset_help("patience"))
    optim.add_argument("--select", choices=MODEL_SELECTIONS, default=None,
                       help="the epoch kept as best_model.pkl and tested: val = highest "
                       "validation SRCC; last = the last epoch (a validation split of a few "
                       "dozen images picks by noise: SRCC's standard error is ~0.2 at 20) "
                       + preset_help("select"))
    optim.add_argument("--max_steps_per_epoch", type=positive_int, default=None,
                       help="cap optimizer steps per epoch (tests and benchmarks)")
    optim.add_argument("--repeats", type=positive_int, default=1,
                       help="N runs NAME_r{i} with --split_seed+i and --seed+i, and a summary "
                       "<output_dir>/NAME_repeats.json with median and spread of test SRCC/PLCC")
    add_common_args(parser, training=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train (one run or --repeats), return the exit status (a stop raises
    RunStopped, which run_script turns into the exit status)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_with_config(get_args_parser(), argv)
    command = command_line(__file__, argv, drop="--resume")
    from common.distributed import cleanup, init_distributed
    from engine.finetune import run

    info = init_distributed(args.device)
    try:
        run(args, info, command)
    finally:
        cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
