"""`TagGAN`: the conditional GAN of Jin et al. (2017) as a `keras.Model`.

`fit()` runs the discriminator step (tag loss on real images, adversarial
loss, DRAGAN penalty) and the generator step (adversarial and tag loss on
fakes) of SPEC section 4 on TensorFlow or JAX. The gradient code of each
backend lives in `kanime.training.backends`; the losses are backend-neutral.
"""

import keras
from keras import ops

from kanime.tags import PAPER_TAGS
from kanime.training import losses
from kanime.training.augment import DRAWS as AUGMENTATION_DRAWS
from kanime.training.augment import augment as augment_images
from kanime.training.augment import draw_augmentation, parse_augmentations
from kanime.training.backends import backend_module

FAKE_TAG_MODES = ("paper", "data")
TAG_LOSSES = ("sigmoid", "grouped")
PENALTIES = ("dragan", "r1")
METRIC_NAMES = (
    "d_loss", "g_loss", "gp", "d_tag_loss", "g_tag_loss", "d_adv_loss", "g_adv_loss",
    "d_real_logit", "d_fake_logit",
)  # fmt: skip


class OptimizerPair:
    """The two optimizers seen as one, so Keras's JAX trainer threads both states.

    Keras's JAX `fit()` passes `model.optimizer.variables` through the jitted
    step and writes them back; listing both optimizers' variables here lets
    the step update each with `stateless_apply`.
    """

    def __init__(self, g_optimizer, d_optimizer):
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def variables(self):
        return list(self.g_optimizer.variables) + list(self.d_optimizer.variables)

    @property
    def built(self):
        return self.g_optimizer.built and self.d_optimizer.built

    @property
    def iterations(self):
        return self.g_optimizer.iterations

    def build(self, variables):  # both are built in `TagGAN.compile`.
        del variables


class TagGAN(keras.Model):
    """A tag-conditioned GAN with a DRAGAN penalty and an EMA generator.

    Train it with `fit()` on `(images, tags)` batches: images in [-1, 1] of
    shape `(n, r, r, 3)`, tags multi-hot `(n, len(vocabulary))`. Each step
    updates the discriminator once and the generator once, then moves the
    exponential moving average (EMA) of the generator's weights, which is
    what samples and exports use (`ema_generator`).

    Args:
        generator: a `kanime.models.Generator` (`[z, tags]` -> images).
        discriminator: a `kanime.models.Discriminator` (images -> `(logit, tag_logits)`).
        vocabulary: the `TagVocabulary` the tags follow.
        fake_tags: how the tags asked of the generator are drawn: `"paper"`
            (one hair and eye colour uniformly, other tags on with probability
            0.25) or `"data"` (the real batch's tag vectors, shuffled: the
            training set's label distribution).
        ema_half_life_images: images seen over which the EMA weight of old
            weights halves; 0 keeps `ema_generator` equal to `generator`.
        seed: seed of the step's random draws (noise, fake tags, penalty points).
        **kwargs: passed to `keras.Model`.

    Examples:
        >>> import numpy as np
        >>> from kanime.models import Generator, Discriminator
        >>> gan = TagGAN(
        ...     Generator(32, channels=8, num_blocks=1, upsample_channels=32),
        ...     Discriminator(32, channels=8, blocks_per_stage=1),
        ... )
        >>> gan.compile(keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5))
        >>> images = np.random.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
        >>> tags = PAPER_TAGS.sample(8, 0)
        >>> history = gan.fit(images, tags, batch_size=4, epochs=1, verbose=0)
        >>> sorted(history.history)[:3]
        ['d_adv_loss', 'd_fake_logit', 'd_loss']

    Reference:
        Jin et al., arXiv 1708.05509 (2017); Kodali et al., "On Convergence
        and Stability of GANs" (DRAGAN), arXiv 1705.07215 (2017).
    """

    def __init__(
        self,
        generator,
        discriminator,
        vocabulary=PAPER_TAGS,
        fake_tags="paper",
        ema_half_life_images=10000.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if fake_tags not in FAKE_TAG_MODES:
            raise ValueError(
                f"`fake_tags` must be one of {FAKE_TAG_MODES}. Received: fake_tags={fake_tags!r}"
            )
        if ema_half_life_images < 0:
            raise ValueError(
                "`ema_half_life_images` must be >= 0. "
                f"Received: ema_half_life_images={ema_half_life_images}"
            )
        num_tags = generator.inputs[1].shape[-1]
        if num_tags != len(vocabulary) or discriminator.outputs[1].shape[-1] != len(vocabulary):
            raise ValueError(
                f"The models must take and predict {len(vocabulary)} tags (the vocabulary). "
                f"Received: generator tags={num_tags}, "
                f"discriminator tags={discriminator.outputs[1].shape[-1]}"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.ema_generator = generator.__class__.from_config(
            {**generator.get_config(), "name": "ema_generator"}
        )
        self.ema_generator.set_weights(generator.get_weights())
        self.ema_generator.trainable = False
        self.vocabulary = vocabulary
        self.fake_tags = fake_tags
        self.ema_half_life_images = float(ema_half_life_images)
        self.latent_dim = generator.inputs[0].shape[-1]
        self.seed_generator = keras.random.SeedGenerator(seed, name="step_seed")
        # Steps trained, counted by the step itself: an optimizer's `iterations` does not
        # advance on a step that mixed_float16's loss scaling skips, and a run's logs,
        # backups and resume epoch must not drift with it.
        self.steps_done = keras.Variable(
            0, dtype="int32", trainable=False, name="steps_done",
            aggregation="only_first_replica",
        )  # fmt: skip
        self.trackers = [keras.metrics.Mean(name=name) for name in METRIC_NAMES]
        # The paper's losses until `compile` says otherwise.
        self.lambda_tag, self.tag_loss, self.exclusive_groups = 1.0, "sigmoid", []
        self.penalty, self.augmentations = "dragan", ()
        self.built = True

    @property
    def metrics(self):
        return self.trackers

    def call(self, images, training=False):
        return self.discriminator(images, training=training)

    def compile(
        self,
        g_optimizer,
        d_optimizer,
        lambda_adv=34.0,
        lambda_gp=0.5,
        jit_compile="auto",
        lambda_tag=1.0,
        tag_loss="sigmoid",
        penalty="dragan",
        augment=None,
        **kwargs,
    ):
        """Configures training.

        Args:
            g_optimizer: optimizer of the generator (Adam 2e-4, beta_1 0.5 in the paper).
            d_optimizer: optimizer of the discriminator.
            lambda_adv: weight of the adversarial terms (34, the number of tags).
            lambda_gp: weight of the gradient penalty (0.5).
            jit_compile: compile the step with XLA (TensorFlow) / jit (JAX);
                `"auto"` lets Keras decide (XLA is off on CPU-only TensorFlow). On
                torch only `False` or `"auto"` (eager): `torch.compile` has no
                double backward for the penalty.
            lambda_tag: weight of the tag loss in both networks' losses (1, the paper).
            tag_loss: `"sigmoid"` (the paper: one sigmoid cross-entropy per tag) or
                `"grouped"` (one softmax cross-entropy per exclusive group of the
                vocabulary, sigmoids for the others; see `losses.tag_loss`).
            penalty: `"dragan"` (the paper: `(||grad|| - 1)^2` near real images) or
                `"r1"` (`||grad||^2` at real images).
            augment: augmentations joined by `+` (`"translation+cutout"`, see
                `kanime.training.augment`), applied to every image the
                discriminator judges (not to the penalty's points); None: none.
            **kwargs: passed to `keras.Model.compile` (e.g. `steps_per_execution`).
        """
        for name, value, choices in [
            ("tag_loss", tag_loss, TAG_LOSSES),
            ("penalty", penalty, PENALTIES),
        ]:
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}. Received: {value!r}")
        if jit_compile is True and keras.backend.backend() == "torch":
            raise ValueError(
                "`jit_compile=True` on the torch backend means `torch.compile`, which cannot "
                "differentiate the gradient penalty's gradient again (double backward). Use "
                "`jit_compile=False` (or 'auto') on torch, or train on JAX or TensorFlow "
                "for a compiled step. Received: jit_compile=True"
            )
        super().compile(jit_compile=jit_compile, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        g_optimizer.build(self.generator.trainable_variables)
        d_optimizer.build(self.discriminator.trainable_variables)
        self.optimizer = OptimizerPair(g_optimizer, d_optimizer)
        self.lambda_adv = float(lambda_adv)
        self.lambda_gp = float(lambda_gp)
        self.lambda_tag = float(lambda_tag)
        self.penalty = penalty
        self.tag_loss = tag_loss
        self.exclusive_groups = []  # (start, stop) columns of the softmax groups
        if tag_loss == "grouped":
            for group in self.vocabulary.groups:
                if group.exclusive:
                    part = self.vocabulary.group_slice(group.name)
                    self.exclusive_groups.append((part.start, part.stop))
        self.augmentations = parse_augmentations(augment)

    # --- pieces shared by the backends ---------------------------------------

    def draw(self, images, tags, shard=0, num_shards=1):
        """The step's random draws: noise, fake tags and DRAGAN's `u`, `alpha`.

        Returns a dict with `z` `(n, latent_dim)`, `fake_tags` `(n, T)`, `u`
        (the shape of `images`) and `alpha` `(n, 1, 1, 1)`.

        With `num_shards > 1` (data parallelism on TensorFlow), `images` is part
        `shard` of `num_shards` equal parts of the global batch and `tags` holds
        the tags of the whole global batch. The draws are made for the global
        batch (alike on every replica, which share the seed) and part `shard` of
        each is returned: a replica draws what one device would for its images.
        """
        n = ops.shape(images)[0]
        total = n * num_shards
        z = keras.random.normal((total, self.latent_dim), seed=self.seed_generator)
        if self.fake_tags == "paper":
            fake_tags = self.vocabulary.sample_ops(total, self.seed_generator)
        else:
            fake_tags = keras.random.shuffle(
                ops.cast(tags, "float32"), axis=0, seed=self.seed_generator
            )
        u_shape = ops.shape(images) if num_shards == 1 else (total, *ops.shape(images)[1:])
        u = keras.random.uniform(u_shape, seed=self.seed_generator)
        alpha = keras.random.uniform((total, 1, 1, 1), seed=self.seed_generator)
        draws = {"z": z, "fake_tags": fake_tags, "u": u, "alpha": alpha}
        size = images.shape[1]
        for which in ("real", "fake"):
            params = draw_augmentation(self.augmentations, total, size, self.seed_generator)
            draws.update({f"{which}_{k}": v for k, v in params.items()})
        if num_shards == 1:
            return draws
        return {k: v[shard * n : (shard + 1) * n] for k, v in draws.items()}

    def augment(self, images, noise, which):
        """`images` through the step's augmentation draws for `which` ("real" or "fake")."""
        if not self.augmentations:
            return images
        params = {k: noise[f"{which}_{k}"] for k in AUGMENTATION_DRAWS if f"{which}_{k}" in noise}
        return augment_images(images, params, images.shape[1])

    def penalty_points(self, images, noise, dragan_points=losses.dragan_points):
        """Where the penalty's gradient is taken: near real images (DRAGAN) or at them (R1).

        `dragan_points(images, u, alpha)` makes DRAGAN's points (a data-parallel step
        passes one that uses the global batch's standard deviation).
        """
        if self.penalty == "r1":
            return ops.cast(images, "float32")
        return dragan_points(images, noise["u"], noise["alpha"])

    def discriminator_objective(self, out, penalty_grads, real_tags):
        """D loss = lambda_tag * L_tag(real) + lambda_adv * L_adv(D) + lambda_gp * L_gp.

        `out` is D's `(logit, tag_logits)` on the real images followed by as many fakes.
        """
        logit, tag_logits = out
        n = ops.shape(real_tags)[0]
        real_logit, real_tag_logits, fake_logit = logit[:n], tag_logits[:n], logit[n:]
        d_tag = losses.tag_loss(real_tag_logits, real_tags, self.exclusive_groups)
        d_adv = losses.discriminator_adversarial_loss(real_logit, fake_logit)
        if self.penalty == "r1":
            gp = losses.r1_penalty(penalty_grads)
        else:
            gp = losses.gradient_penalty(penalty_grads)
        total = self.lambda_tag * d_tag + self.lambda_adv * d_adv + self.lambda_gp * gp
        return total, {
            "d_loss": total, "d_tag_loss": d_tag, "d_adv_loss": d_adv, "gp": gp,
            "d_real_logit": ops.mean(ops.cast(real_logit, "float32")),
            "d_fake_logit": ops.mean(ops.cast(fake_logit, "float32")),
        }  # fmt: skip

    def generator_objective(self, fake_out, fake_tags):
        """G loss = lambda_adv * L_adv(G) + lambda_tag * L_tag(fake)."""
        fake_logit, fake_tag_logits = fake_out
        g_adv = losses.generator_adversarial_loss(fake_logit)
        g_tag = losses.tag_loss(fake_tag_logits, fake_tags, self.exclusive_groups)
        total = self.lambda_adv * g_adv + self.lambda_tag * g_tag
        return total, {"g_loss": total, "g_tag_loss": g_tag, "g_adv_loss": g_adv}

    def ema_decay(self, batch_size):
        """EMA weight of the old average after a batch: `0.5 ** (batch / half_life)`."""
        if self.ema_half_life_images == 0:
            return 0.0
        return 0.5 ** (ops.cast(batch_size, "float32") / self.ema_half_life_images)

    def update_ema(self, batch_size):
        """Moves the EMA generator towards the generator after a step of `batch_size`
        images (the global batch): the stateful update of TensorFlow and PyTorch (call it
        under `torch.no_grad()` there); JAX computes the same values functionally."""
        beta = self.ema_decay(batch_size)
        for w, e in self.ema_pairs():
            e.assign(beta * e + (1.0 - beta) * w if w.trainable else w)

    def ema_pairs(self):
        """`(generator weight, EMA weight)` pairs; trainable ones are averaged, others copied."""
        pairs = list(zip(self.generator.weights, self.ema_generator.weights))
        for w, e in pairs:
            if tuple(w.shape) != tuple(e.shape):
                raise AssertionError(f"EMA weight {e.path} does not match {w.path}")
        return pairs

    def update_metrics(self, logs):
        for tracker in self.trackers:
            tracker.update_state(logs[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    def train_step(self, *args):
        return backend_module().train_step(self, *args)

    def save_own_variables(self, store):
        # Keras saves no `SeedGenerator`: a backup keeps the seed so a resumed run draws
        # what the uninterrupted one would have.
        super().save_own_variables(store)
        store["seed"] = self.seed_generator.state

    def load_own_variables(self, store):
        self.seed_generator.state.assign(store["seed"])
        super().load_own_variables({k: store[k] for k in store.keys() if k != "seed"})

    def state_variables(self):
        """Every variable a resumed run needs, in a fixed order (what a backup holds)."""
        return (
            list(self.generator.variables)
            + list(self.discriminator.variables)
            + list(self.ema_generator.variables)
            + list(self.g_optimizer.variables)
            + list(self.d_optimizer.variables)
            + [self.seed_generator.state]
        )

    @property
    def step(self):
        """Training steps done so far, skipped (loss-scale overflow) steps included."""
        return int(ops.convert_to_numpy(self.steps_done))
