"""Fine-tune a pretrained EfficientNet-Lite featurizer without losing what ImageNet taught it.

What trains: a residual linear head on the 1280 pooled features (x + Wx + b, starting at zero so
training starts from the backbone itself) and, if asked, the last MBConv blocks. Everything
below is frozen, so its output for each photo is computed once per camera-like view
(`CameraAugment`) and cached (in memory, or on disk with `cache_dir` for reruns).

Measured on the clothing validation split (see the model card): training the last 2 or 5
blocks lowered same-category P@1 from 0.818 to 0.65-0.78 in every setting tried, while the head
alone raised it to 0.85-0.87; so by default only the head trains.

The loss, on L2-normalised embeddings:
- category: a cosine-softmax classifier with a CosFace margin (as `fine_tune` uses);
- keep: `keep_weight` x scale x (1 - cosine to the start model's embedding of the same view),
  which holds on to appearance inside a category (exact-item recall of re-shots);
- instance (optional): supervised contrastive over views, positives = the same product
  (`item_id` column, else the row).
BatchNorm keeps its ImageNet statistics. Early stopping on the validation split's
same-category P@1 against the training photos; the best epoch's weights are written.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from tqdm import tqdm

from cloud_sync.indexing.catalog import read_image_bytes
from cloud_sync.training.augment import CameraAugment
from cloud_sync.training.efficientnet_lite import FEATURE_DIM, VARIANTS, EfficientNetLite
from cloud_sync.training.export import save_featurizer
from cloud_sync.training.fine_tune import COSINE_MARGIN, COSINE_SCALE, CosineClassifier, read_split
from components.common.errors import CatalogError, ImageError, ModelError
from components.featurizer.model import Featurizer, fingerprint
from components.featurizer.preprocess import decode_image, preprocess, shrink

TEMPERATURE = 0.1  # SupCon temperature
HEAD_PREFIX = "residual_head_"


@dataclass
class BackboneTuneConfig:
    data: Path
    out: Path
    start_from: Path  # an EfficientNet-Lite featurizer directory (import-featurizer)
    val: Path | None = None
    val_fraction: float = 0.1
    train_blocks: int = 0  # the last N MBConv blocks train too (0: the residual head only)
    image_size: int | None = None  # default: the start model's
    views: int = 2  # camera-like views cached per training photo
    epochs: int = 15
    patience: int = 4
    batch_size: int = 64  # photos per step (two views each)
    lr: float = 3e-4  # Adam, cosine decay
    instance_weight: float = 0.0
    keep_weight: float = 0.1  # pull towards the start model's embedding of the same view
    cache_dir: Path | None = None  # keep the frozen part's outputs here between runs
    seed: int = 0
    command: str = ""


@dataclass
class TuneResult:
    epochs_run: int
    best_epoch: int
    best_val_p1: float
    start_val_p1: float
    seconds: float
    train_count: int
    val_count: int
    skipped: list[str]


class ResidualHead(mx.gluon.nn.HybridBlock):
    """x + W x + b on the pooled features; starts at zero, so training starts from the backbone itself."""

    def __init__(self, dim: int = FEATURE_DIM):
        super().__init__(prefix=HEAD_PREFIX)
        with self.name_scope():
            self.dense = mx.gluon.nn.Dense(dim, in_units=dim, weight_initializer="zeros", prefix="dense_")

    def hybrid_forward(self, F, x):
        return x + self.dense(x)


def split_network(start_from: Path, train_blocks: int, image_size: int | None = None):
    """(frozen bottom, trainable top, the whole network, its spec) from a featurizer directory. The
    top is the last `train_blocks` MBConv blocks with the conv head (none when 0) and a residual
    linear head; the spec's input size is `image_size` where given (the weights fit any size)."""
    spec = Featurizer(start_from).spec  # checks the directory
    if image_size:
        spec = replace(spec, preprocessing=replace(spec.preprocessing, height=image_size, width=image_size))
    if spec.arch not in VARIANTS:
        raise ModelError(
            f"{start_from}: arch {spec.arch!r} is not EfficientNet-Lite; this fine-tune starts "
            f"from `visual-search import-featurizer` output ({', '.join(VARIANTS)})"
        )
    net, head = EfficientNetLite(spec.arch, spec.preprocessing.height), ResidualHead()
    head.initialize()
    params = str(start_from / spec.params_file)
    net.features.collect_params().load(params, ctx=mx.cpu(), allow_missing=False, ignore_extra=True)
    head.collect_params().load(params, ctx=mx.cpu(), allow_missing=True, ignore_extra=True)  # a tuned start
    layers = list(net.features)
    block_positions = [i for i, layer in enumerate(layers) if type(layer).__name__ == "MBConv"]
    if not 0 <= train_blocks <= len(block_positions):
        raise ModelError(f"--train-blocks {train_blocks}: {spec.arch} has {len(block_positions)} blocks")
    cut = block_positions[len(block_positions) - train_blocks] if train_blocks else len(layers)
    bottom, top = mx.gluon.nn.HybridSequential(prefix=""), mx.gluon.nn.HybridSequential(prefix="")
    bottom.add(*layers[:cut])
    top.add(*layers[cut:], head)
    bottom.hybridize(static_alloc=True)
    whole = mx.gluon.nn.HybridSequential(prefix="")
    whole.add(net.features, head)
    return bottom, top, whole, spec


def cache_views(
    bottom, root: Path, items, prep, views: int, seed: int, skipped: list[str], progress: bool, desc: str
) -> tuple[np.ndarray, list]:
    """Frozen-bottom outputs, (photos, 1 + views, C, H, W) float16: view 0 is the photo as
    inference sees it, the others camera-like augmentations (seeded per photo)."""
    augment = CameraAugment(prep.height)
    shape = bottom(mx.nd.zeros((1, 3, prep.height, prep.width))).shape[1:]
    # one array filled in place: with an array appended per photo, the heap of a 3,068-photo
    # run grew to 9 GB for a cache of 0.5 GB
    cache = np.empty((len(items), 1 + views, *shape), np.float16)
    kept = []
    for index, item in enumerate(tqdm(items, desc=desc, unit="img", disable=not progress, leave=False)):
        try:
            image = decode_image(read_image_bytes(root, item.image), item.image)
        except ImageError as exc:
            skipped.append(f"{root / item.where}: {exc}")
            continue
        image = shrink(image, shortest=2 * prep.height)
        rng = np.random.default_rng([seed, index])
        batch = [preprocess(image, prep)] + [preprocess(augment(image, rng), prep) for _ in range(views)]
        cache[len(kept)] = bottom(mx.nd.array(np.stack(batch))).asnumpy()
        kept.append(item)
    if not kept:
        raise CatalogError(f"{root}: no readable images")
    return cache[: len(kept)], kept


def embed(top, cached: np.ndarray, batch: int = 256) -> np.ndarray:
    """L2-normalised embeddings of cached bottom outputs (N, C, H, W), inference mode."""
    chunks = [
        mx.nd.L2Normalization(top(mx.nd.array(cached[s : s + batch], dtype="float32"))).asnumpy()
        for s in range(0, len(cached), batch)
    ]
    return np.concatenate(chunks)


def same_category_p1(
    queries: np.ndarray, query_labels: np.ndarray, catalog: np.ndarray, catalog_labels: np.ndarray
) -> float:
    best = np.argmax(queries @ catalog.T, axis=1)
    return float(np.mean(catalog_labels[best] == query_labels))


def supcon_loss(z, instance: mx.nd.NDArray) -> mx.nd.NDArray:
    """Supervised contrastive loss of normalised embeddings `z` (2B, D); positives share `instance`."""
    n = z.shape[0]
    logits = mx.nd.dot(z, z, transpose_b=True) / TEMPERATURE
    self_mask = mx.nd.eye(n)
    logits = logits - 1e4 * self_mask  # never its own positive or negative
    positives = (instance.reshape((-1, 1)) == instance.reshape((1, -1))) * (1 - self_mask)
    log_prob = mx.nd.log_softmax(logits, axis=1)
    return -(log_prob * positives).sum(axis=1) / mx.nd.maximum(positives.sum(axis=1), 1)


@dataclass
class Prepared:
    """Everything training needs, computed once: the network split, cached views and labels."""

    top: mx.gluon.HybridBlock
    features: mx.gluon.HybridBlock
    spec: object
    split: object
    train_cache: np.ndarray
    val_cache: np.ndarray
    y: np.ndarray
    val_y: np.ndarray
    instance: np.ndarray
    skipped: list[str]
    start_weights: dict


def prepare(cfg: BackboneTuneConfig, progress: bool, report: Callable[[str], None]) -> Prepared:
    split = read_split(cfg)  # same catalogs, validation rule and errors as `fine_tune`
    mx.random.seed(cfg.seed)
    bottom, top, features, spec = split_network(cfg.start_from, cfg.train_blocks, cfg.image_size)
    prep = spec.preprocessing
    skipped = list(split.skipped)
    key = cache_key(cfg, spec, split)
    train_cache, train_items = cached(
        cfg.cache_dir,
        f"train-{key}",
        split.train[1],
        report,
        lambda: cache_views(
            bottom, *split.train, prep, cfg.views, cfg.seed, skipped, progress, "caching training views"
        ),
    )
    val_cache, val_items = cached(
        cfg.cache_dir,
        f"val-{key}",
        split.val[1],
        report,
        lambda: cache_views(
            bottom, *split.val, prep, 0, cfg.seed, skipped, progress, "caching validation photos"
        ),
    )
    for line in skipped:
        report(f"skipped {line}")
    classes = {name: i for i, name in enumerate(split.classes)}
    product = {key: i for i, key in enumerate(dict.fromkeys(_product(item) for item in train_items))}
    return Prepared(
        top,
        features,
        spec,
        split,
        train_cache,
        val_cache,
        np.array([classes[item.category] for item in train_items]),
        np.array([classes.get(item.category, -1) for item in val_items]),
        np.array([product[_product(item)] for item in train_items]),
        skipped,
        weights_of(top),
    )


def cache_key(cfg: BackboneTuneConfig, spec, split) -> str:
    """Names a cache by what determines its content: model, cut, size, views, seed and photos."""
    photos = [
        [str(root), [(item.image, item.where) for item in items]] for root, items in (split.train, split.val)
    ]
    text = json.dumps(
        [
            fingerprint(cfg.start_from),
            cfg.train_blocks,
            spec.preprocessing.as_dict(),
            cfg.views,
            cfg.seed,
            photos,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(cache_dir: Path | None, name: str, items, report, compute):
    """(array, kept items): loaded from `cache_dir/name.npy` when there, else computed and saved."""
    if cache_dir is None:
        return compute()
    array_path, kept_path = Path(cache_dir) / f"{name}.npy", Path(cache_dir) / f"{name}.json"
    if array_path.is_file() and kept_path.is_file():
        wanted = set(json.loads(kept_path.read_text()))
        report(f"reusing cached views {array_path}")
        return np.load(array_path), [item for item in items if item.where in wanted]
    array, kept = compute()
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    np.save(array_path, array)
    kept_path.write_text(json.dumps([item.where for item in kept]))
    return array, kept


def tune(
    cfg: BackboneTuneConfig, *, progress: bool = True, report: Callable[[str], None] = print
) -> TuneResult:
    started = time.time()
    ready = prepare(cfg, progress, report)
    return train(cfg, ready, started, progress, report)


def train(
    cfg: BackboneTuneConfig, ready: Prepared, started: float, progress: bool, report: Callable[[str], None]
) -> TuneResult:
    top, features, spec, split = ready.top, ready.features, ready.spec, ready.split
    train_cache, val_cache, y, val_y, instance = (
        ready.train_cache,
        ready.val_cache,
        ready.y,
        ready.val_y,
        ready.instance,
    )
    skipped, n_classes = ready.skipped, len(split.classes)
    mx.random.seed(cfg.seed)
    set_weights(top, ready.start_weights)  # a second run on the same caches starts afresh
    # what the start model says of every view: training is pulled back towards it
    start_views = np.stack([embed(top, train_cache[:, v]) for v in range(train_cache.shape[1])], axis=1)
    classifier = CosineClassifier(n_classes, FEATURE_DIM, prefix="tune_")
    classifier.initialize(mx.init.Xavier())
    # start the class centres at the category means, so the first steps do not shake the backbone
    start_train = start_views[:, 0]
    centres = np.stack([start_train[y == c].mean(0) for c in range(n_classes)])
    classifier.weight.set_data(mx.nd.array(centres))
    start_p1 = same_category_p1(embed(top, val_cache[:, 0]), val_y, start_train, y)
    report(f"start: validation same-category P@1 {start_p1:.4f}")

    params = top.collect_params()
    params.update(classifier.collect_params())
    batch = min(cfg.batch_size, len(y))
    steps = max(1, len(y) // batch)
    schedule = mx.lr_scheduler.CosineScheduler(
        max_update=cfg.epochs * steps, base_lr=cfg.lr, final_lr=cfg.lr * 0.01
    )
    trainer = mx.gluon.Trainer(
        params, "adam", {"learning_rate": cfg.lr, "lr_scheduler": schedule, "wd": 1e-5}
    )
    best = (start_p1, 0, weights_of(top))
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(y))
        losses = []
        bar = tqdm(range(steps), desc=f"epoch {epoch}", unit="step", disable=not progress, leave=False)
        for step in bar:
            chosen = order[step * batch : (step + 1) * batch]
            pick = np.stack([rng.choice(np.arange(1, cfg.views + 1), 2, replace=False) for _ in chosen])
            x = np.concatenate([train_cache[chosen, pick[:, 0]], train_cache[chosen, pick[:, 1]]])
            labels = np.concatenate([y[chosen], y[chosen]])
            inst = mx.nd.array(np.concatenate([instance[chosen], instance[chosen]]))
            target = mx.nd.one_hot(mx.nd.array(labels), n_classes)
            z0 = mx.nd.array(
                np.concatenate([start_views[chosen, pick[:, 0]], start_views[chosen, pick[:, 1]]]),
                dtype="float32",
            )
            with mx.autograd.record(train_mode=False):  # BatchNorm keeps its ImageNet statistics
                z = mx.nd.L2Normalization(top(mx.nd.array(x, dtype="float32")))
                cosine = classifier(z)
                logits = COSINE_SCALE * (cosine - COSINE_MARGIN * target)
                loss = -(target * mx.nd.log_softmax(logits)).sum(axis=1)
                loss = loss + cfg.keep_weight * COSINE_SCALE * (1 - (z * z0).sum(axis=1))
                if cfg.instance_weight:
                    loss = loss + cfg.instance_weight * supcon_loss(z, inst)
            loss.backward()
            trainer.step(len(x))
            losses.append(float(loss.mean().asscalar()))
            bar.set_postfix(loss=f"{np.mean(losses):.3f}")
        bar.close()
        p1 = same_category_p1(embed(top, val_cache[:, 0]), val_y, embed(top, train_cache[:, 0]), y)
        if p1 >= best[0]:  # ties go to the later, longer-trained epoch
            best = (p1, epoch, weights_of(top))
        report(
            f"epoch {epoch}/{cfg.epochs}: loss {np.mean(losses):.4f}, validation same-category P@1 "
            f"{p1:.4f} (best {best[0]:.4f} at epoch {best[1]})"
        )
        if epoch - best[1] >= cfg.patience:
            report(f"early stop: validation P@1 not better for {cfg.patience} epochs")
            break
    set_weights(top, best[2])
    seconds = round(time.time() - started, 1)
    extra = {
        **{k: v for k, v in spec.extra.items() if k != "calibration"},
        "command": cfg.command,
        "data": str(cfg.data),
        "validation": split.val_source,
        "started_from": f"{cfg.start_from} ({spec.name})",
        "train_images": len(y),
        "val_images": len(val_y),
        "skipped_images": len(skipped),
        "categories": split.classes,
        "trained": "a residual linear head on the pooled features"
        + (f", the last {cfg.train_blocks} MBConv blocks and the conv head" if cfg.train_blocks else "")
        + "; BatchNorm statistics frozen",
        "loss": f"cosine softmax (scale {COSINE_SCALE}, margin {COSINE_MARGIN}) + "
        f"{cfg.instance_weight} x SupCon over products (temperature {TEMPERATURE}) + "
        f"{cfg.keep_weight} x {COSINE_SCALE} x (1 - cosine to the start model's embedding)",
        "optimizer": f"Adam lr {cfg.lr}, cosine decay, batch {batch} photos x 2 of {cfg.views} views",
        "seed": cfg.seed,
        "epochs_run": epoch,
        "best_epoch": best[1],
        "start_val_p1": round(start_p1, 4),
        "best_val_p1": round(best[0], 4),
        "seconds": seconds,
    }
    save_featurizer(
        pristine_copy(features, spec),
        cfg.out,
        spec.preprocessing,
        name=f"{spec.arch}-tuned",
        arch=spec.arch,
        extra=extra,
    )
    return TuneResult(epoch, best[1], best[0], start_p1, seconds, len(y), len(val_y), skipped)


def _product(item) -> str:
    return str(item.extra.get("item_id") or item.id)


def pristine_copy(whole, spec):
    """The trained weights in a network that has run nothing yet: MXNet's exported graph records
    how often each BatchNorm state was touched, which must not make equal models differ."""
    fresh = mx.gluon.nn.HybridSequential(prefix="")
    fresh.add(EfficientNetLite(spec.arch, spec.preprocessing.height).features, ResidualHead())
    for param in fresh.collect_params().values():
        param.initialize(init="zeros", force_reinit=True)
    set_weights(fresh, weights_of(whole))
    return fresh


def weights_of(block) -> dict:
    """A copy of every parameter of `block`, by name."""
    return {name: param.data().copy() for name, param in block.collect_params().items()}


def set_weights(block, weights: dict) -> None:
    params = block.collect_params()
    for name, value in weights.items():
        params[name].set_data(value)
