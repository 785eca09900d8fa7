"""Defaults that every file in configs/ starts from; each file changes what it needs.

Config files are ml_collections ``get_config()`` files (configs/grcl.py is the
paper). Any field can be overridden on the command line, e.g.
``--config.model.T=3 --config.model.dtype=bfloat16``.
"""

import ml_collections

PAPER_CHARSET = "0123456789abcdefghijklmnopqrstuvwxyz"
# PARSeq's 94: digits, both cases and the 32 ASCII punctuation marks (no space).
CASED_CHARSET = (PAPER_CHARSET + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def get_model_config() -> ml_collections.ConfigDict:
    """The paper's model: GRCL with T = 5, shared recurrent convs, widths 64/64/128/256/512."""
    m = ml_collections.ConfigDict()
    m.T = 5                          # recurrent iterations per GRCL (0: the plain-CNN ablation)
    m.gated = True                   # False: the ungated RCL ablation
    m.share = True                   # recurrent convs shared over iterations (False: one set each)
    m.conv0_features = 64
    m.grcl_features = (64, 128, 256)
    m.out_features = 512             # conv4 width, and the first BLSTM's linear map
    m.hidden = 256                   # LSTM units per direction (DTRB's; the seed: 512)
    m.dropout = 0.0                  # training: fraction of the BLSTMs' inputs zeroed
    m.dtype = "float32"              # compute dtype: float32 | bfloat16 (params stay float32)
    m.bn_momentum = 0.9              # Flax convention: keep 0.9 of the old statistic (PyTorch 0.1)
    m.bn_epsilon = 1e-5
    m.scan_unroll = 0                # GRCL iterations per while-loop trip (T: fully unrolled;
                                     # 0: rolled in training, unrolled in eval)
    m.remat = "convs"                # backward pass of GRCL iterations: none | convs (recompute
                                     # all but the conv outputs) | full (recompute everything)
    m.conv_impl = "auto"             # 3x3 convs: winograd | xla | auto (Winograd on the CPU)
    return m


def get_data_config() -> ml_collections.ConfigDict:
    """Where the data comes from and how bad records are handled (see grcnn_jax/data/)."""
    d = ml_collections.ConfigDict()
    # 'synth' (the embedded generator), an LMDB path, an ICDAR-03 folder, 'tfds:NAME/SPLIT',
    # or several comma-separated; '' for no validation.
    d.train = "synth"
    d.train_weights = ""              # with several comma-separated train sets: how often to draw
                                      # from each, e.g. '0.5,0.5' (DTRB's --batch_ratio); '' joins
                                      # them end to end
    d.val = "synth"
    d.synth_train_size = 100_000_000  # the generator is random-access: any length, no storage
    d.synth_val_size = 2_000
    d.synth_seed = 1000               # train uses synth_seed, val synth_seed + 1
    d.synth_palettes = ""             # a .npy of (text, background) colours measured on real
                                      # crops (grcnn-synth --palettes_from): the generator paints
                                      # half its words in them; '' = its own colours only
    d.synth_styles = ""               # extra lettering styles for a few per cent of the
                                      # generator's words: 'dots' (LED / dot-matrix), 'relief'
                                      # (raised or cut in the surface), comma-separated
    d.tfds_data_dir = ""              # '' = tensorflow-datasets' default
    d.num_workers = 2                 # loader worker processes (0: in the main process)
    d.keep_aspect = False             # True: scale to the height and pad, not stretch
    d.augment = False                 # loader augmentation for every training source (crop
                                      # jitter, blur, noise, contrast; data.preprocess.augment)
    d.augment_strength = 1.0          # how often and how far augment varies an image (0-3)
    d.augment_edge_cut = 0.06         # the most of the width crop jitter cuts from each side
    d.grayscale = "principal"         # colour -> gray: principal (the image's main colour axis,
                                      # keeps hue contrast) | luma (ITU-R 601 luminance)
    d.max_label_length = 25           # labels padded to this (capped by the model's frames)
    d.policy = ml_collections.ConfigDict(dict(
        bad_image="skip",             # skip | fail
        empty_label="skip",           # skip | fail
        unknown_chars="lower",        # lower (lowercase, then skip) | skip | fail
        too_long="skip",              # skip | fail
        missing_record="skip",        # skip | fail (an LMDB index under num-samples is absent)
    ))
    return d


def get_optimizer_config() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adadelta"               # adadelta (the seed's and DTRB's) | adam | adamw | sgd
    o.learning_rate = 1.0
    o.schedule = "constant"           # constant | cosine (linear warmup, cosine decay)
    o.warmup_steps = 0
    o.rho = 0.95                      # adadelta: DTRB's (the seed: Torch's 0.9, 1e-6)
    o.eps = 1e-8
    o.b1 = 0.9                        # adam / adamw
    o.b2 = 0.999
    o.weight_decay = 1e-4             # adamw
    o.momentum = 0.9                  # sgd (Nesterov off; 0 for plain SGD)
    return o


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.charset = PAPER_CHARSET   # the characters in id order (blank = 0); 'file:PATH' reads one
    config.image_height = 32
    config.image_width = 100
    config.model = get_model_config()
    config.data = get_data_config()
    config.optimizer = get_optimizer_config()
    config.seed = 0
    config.batch_size = 192           # global, over all devices and hosts (the seed's)
    config.eval_batch_size = 256
    config.num_train_steps = 300_000  # the seed's 300k iterations
    config.init_from = ""             # start from trained weights: 'pretrained' (the shipped
                                      # model), a workdir or a checkpoint step directory; the
                                      # model config and charset must match (fresh optimizer)
    config.freeze = ""                # parameter groups kept fixed, comma-separated: backbone,
                                      # blstm1, blstm2 (a frozen backbone also keeps its
                                      # BatchNorm statistics: it runs as in inference)
    config.ema_decay = 0.0            # > 0: keep an exponential moving average of the params
                                      # (e.g. 0.999) and evaluate, save and export with it
    config.grad_accum_steps = 1       # > 1: average the gradients of this many steps per update
                                      # (optax.MultiSteps); num_train_steps counts the small steps
    config.grad_clip_norm = 5.0       # global-norm clipping, DTRB's (0: off; the seed: off)
    config.confidence_penalty = 0.0   # > 0: the loss less this times each image's output
                                      # entropy summed over its frames (nats): against peaky,
                                      # overconfident CTC outputs (0: off)
    config.sam_rho = 0.0              # > 0: sharpness-aware minimization, the gradient taken
                                      # again this far (global norm) uphill; a step costs two
                                      # passes (Foret et al. 2021; 0.05 theirs; 0: off)
    config.guide_layers = 0           # > 0: train with an attention guide of this many
                                      # decoder blocks on the backbone's frames, its loss added
                                      # (guided CTC training, as PP-OCRv3/v4; reading never runs
                                      # it and readers are saved without it; 0: off)
    config.guide_weight = 0.2         # the guide's loss (nats per word, as CTC's) times this
                                      # (about PP-OCRv3's balance: theirs a mean per character)
    config.log_every = 100
    config.eval_every = 5_000
    config.checkpoint_every = 5_000
    config.keep_checkpoints = 3
    config.async_checkpoints = True
    return config


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """A config file's ``get_config()``, loaded by path as ``--config`` loads it."""
    import importlib.util
    import os

    name = "grcnn_config_" + os.path.splitext(os.path.basename(str(path)))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


# Configs saved before ``data.grayscale`` existed were trained on ITU-R 601 luminance.
GRAY_MODE_OF_OLD_CONFIGS = "luma"


def gray_mode(config: ml_collections.ConfigDict) -> str:
    """``config.data.grayscale``, or ``GRAY_MODE_OF_OLD_CONFIGS`` for a config saved before
    the field existed (new configs default to 'principal', ``get_config``)."""
    return config.data.get("grayscale", GRAY_MODE_OF_OLD_CONFIGS)
