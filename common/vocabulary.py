"""Names and values the whole project shares: flag choices, defaults, file names (no imports)."""

MODEL_SIZE_CHOICES = ("micro", "test", "mini", "tiny", "small", "base")
MODEL_SIZE_ALIASES = {"test": "micro"}
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
SCHEDULER_CHOICES = ("cosine", "step", "none", "hyperiqa")
OPTIMIZER_CHOICES = ("adamw", "adam")
GEOMETRIES = ("aspect", "squash")  # resize: keep the aspect, or squash as the references do
# What the stage attention scales: "hyper" = only the pooled stage maps that feed the hyper network
# (the public Swin-HyperIQA), "hyper_lda" = also the four parts of the LDA content vector.
ATTENTION_SCOPES = ("hyper", "hyper_lda")
SCORE_ACTIVATIONS = ("none", "sigmoid")  # Stage 1's scalar score: raw, or squashed into (0, 1)
CONSISTENCY_FORMS = ("standardised", "absolute")  # the consistency term (losses.qualiclip)
POOLINGS = ("stages", "stages_mean", "last")  # Stage 1's head input (models.pretrain_model)
DEFAULT_DISTORTIONS = "blur,jpeg,noise,brightness"
# Stage 1's label-free validation: types kept out of the default training set (and out of the
# KADID types the demo holds out for its zero-shot test).
DEFAULT_VAL_DISTORTIONS = "lens_blur,jpeg2000,impulse_noise,quantization"
EXIT_COLLAPSE = 3  # exit status of a pretraining run stopped by --stop_on_collapse
DEFAULT_CROP_SIZE = 224  # Swin's input size at 224 px: a crop size nobody set
DEFAULT_TEST_PATCHES = 25  # HyperIQA averages 25 crops per test image
SCORES_NAME = "image_scores.csv"
TRACEBACK_ENV = "QUALICLIP_TRACEBACK"
# Pooling of the HyperIQA head's inputs: mean is HyperIQA's average pooling; mean_std also gives
# each pooled cell's spatial standard deviation, the energy in which a randomly initialised
# encoder first shows noise and blur (docs/PROTOCOLS.md, "Stage 2 at the CPU sizes")
HEAD_POOLINGS = ("mean", "mean_std")
# which epoch a fine-tuning run keeps as best_model.pkl: highest validation SRCC, or the last
MODEL_SELECTIONS = ("val", "last")
