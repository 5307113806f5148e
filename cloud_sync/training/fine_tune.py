"""Fine-tune a featurizer on a categorised catalog: a new embedding head on a conv base.

Training: a cosine-softmax (normalised softmax) classifier on L2-normalised embeddings,
with a CosFace margin and label smoothing, so that the embedding is shaped for the
cosine retrieval that the index does. SGD with Nesterov momentum, linear warm-up then
cosine decay, early stopping on validation accuracy (the best epoch's weights are kept).
Written: the base + the embedding layer (no classifier), through `save_featurizer`.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mxnet as mx
import numpy as np
from tqdm import tqdm

from cloud_sync.indexing.catalog import CatalogItem, read_catalog, read_image_bytes
from cloud_sync.training.augment import CameraAugment
from cloud_sync.training.export import save_featurizer, zoo_base
from components.common.errors import CatalogError, ImageError, ModelError
from components.common.files import can_replace
from components.featurizer.model import SPEC_FILE, Featurizer, FeaturizerSpec
from components.featurizer.preprocess import Preprocessing, decode_image, preprocess, shrink

COSINE_SCALE = 16.0  # logits = scale * cos(embedding, class centre)
COSINE_MARGIN = 0.1  # CosFace margin taken off the true class's cosine while training
WEIGHT_DECAY = 5e-4


@dataclass
class FineTuneConfig:
    data: Path
    out: Path
    arch: str = "mobilenet0.5"
    start_from: Path | None = None  # an existing featurizer directory
    pretrained: bool = False  # ImageNet zoo weights (must be downloadable or cached)
    epochs: int = 30
    image_size: int | None = None  # default: the start model's size, or 128
    freeze_base: bool = False
    embedding_dim: int = 128
    seed: int = 0
    val: Path | None = None  # default: a stratified hold-out of `data`
    val_fraction: float = 0.1
    batch_size: int = 64
    lr: float = 0.1
    warmup_epochs: int = 2
    patience: int = 10
    label_smoothing: float = 0.1
    command: str = ""


@dataclass
class Split:
    """Which images train and which validate (read, not yet decoded)."""

    classes: list[str]
    train: tuple[Path, list[CatalogItem]]
    val: tuple[Path, list[CatalogItem]]
    val_source: str
    skipped: list[str] = field(default_factory=list)


@dataclass
class Start:
    """The network that training starts from."""

    base: mx.gluon.HybridBlock
    preprocessing: Preprocessing
    arch: str
    origin: str
    layer_prefix: str = ""  # for the new layers, so that none takes a name the base has


@dataclass
class FineTuneResult:
    spec: FeaturizerSpec
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    train_count: int
    val_count: int
    skipped: list[str]
    classes: int = 0
    epoch_losses: list[float] = field(default_factory=list)  # mean training loss of each epoch run


class CosineClassifier(mx.gluon.HybridBlock):
    """Class centres on the unit sphere: outputs cos(embedding, centre) for every class."""

    def __init__(self, classes: int, dim: int, prefix: str = ""):
        super().__init__(prefix=f"{prefix}cosine_classifier_")
        self.classes = classes
        with self.name_scope():
            self.weight = self.params.get("weight", shape=(classes, dim), init=mx.init.Xavier())

    def hybrid_forward(self, F, x, weight):
        return F.FullyConnected(
            F.L2Normalization(x), F.L2Normalization(weight), no_bias=True, num_hidden=self.classes
        )


def fine_tune(
    cfg: FineTuneConfig, *, progress: bool = True, report: Callable[[str], None] = print
) -> FineTuneResult:
    """Train and write `cfg.out`; `report` gets one line per skipped image and per epoch."""
    started = time.time()
    if not can_replace(cfg.out, lambda path: (path / SPEC_FILE).is_file()):
        raise ModelError(f"{cfg.out}: exists and is not a featurizer directory; choose another --out")
    split = read_split(cfg)
    with mx.name.NameManager():  # fresh layer names: the same run writes the same files
        mx.random.seed(cfg.seed)
        start = start_network(cfg)
        with mx.name.Prefix(start.layer_prefix):  # new layers never reuse the start model's names
            return _fine_tune(cfg, split, start, started, progress, report)


def _fine_tune(
    cfg: FineTuneConfig,
    split: Split,
    start: Start,
    started: float,
    progress: bool,
    report: Callable[[str], None],
) -> FineTuneResult:
    prep = start.preprocessing
    label = {name: index for index, name in enumerate(split.classes)}
    train_x, train_y = load_images(
        *split.train, label, split.skipped, progress, lambda image: shrink(image, shortest=2 * prep.height)
    )
    val_x, val_y = load_images(
        *split.val, label, split.skipped, progress, lambda image: preprocess(image, prep)
    )
    for line in split.skipped:
        report(f"skipped {line}")
    if len(train_x) < 2 or not val_x:
        raise CatalogError(
            f"{cfg.data}: {len(train_x)} training and {len(val_x)} validation images "
            f"could be read; fine-tune needs at least 2 and 1"
        )

    embed = mx.gluon.nn.Dense(cfg.embedding_dim, prefix=f"{start.layer_prefix}embedding_")
    embed.initialize(mx.init.Xavier())
    featurizer = mx.gluon.nn.HybridSequential(prefix="")
    featurizer.add(start.base, embed)
    classifier = CosineClassifier(len(split.classes), cfg.embedding_dim, start.layer_prefix)
    classifier.initialize()
    featurizer.hybridize(static_alloc=True)
    classifier.hybridize(static_alloc=True)
    if cfg.freeze_base:
        start.base.collect_params().setattr("grad_req", "null")
    epoch_losses: list[float] = []
    epochs_run, best_epoch, best_accuracy = train(
        featurizer,
        classifier,
        cfg,
        prep,
        (train_x, train_y),
        (np.stack(val_x), val_y),
        progress,
        report,
        epoch_losses,
    )

    seconds = round(time.time() - started, 1)
    extra = {
        "command": cfg.command,
        "data": str(cfg.data),
        "validation": split.val_source,
        "train_images": len(train_x),
        "val_images": len(val_x),
        "skipped_images": len(split.skipped),
        "categories": split.classes,
        "started_from": start.origin,
        "freeze_base": cfg.freeze_base,
        "loss": f"cosine softmax, scale {COSINE_SCALE}, margin {COSINE_MARGIN}, "
        f"label smoothing {cfg.label_smoothing}",
        "optimizer": f"SGD nesterov 0.9, lr {cfg.lr} warm-up {cfg.warmup_epochs} epochs + cosine, "
        f"batch {cfg.batch_size}, weight decay {WEIGHT_DECAY}",
        "seed": cfg.seed,
        "epochs_requested": cfg.epochs,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "best_val_accuracy": round(best_accuracy, 4),
        "seconds": seconds,
    }
    spec = save_featurizer(featurizer, cfg.out, prep, arch=start.arch, extra=extra)
    return FineTuneResult(
        spec,
        epochs_run,
        best_epoch,
        best_accuracy,
        seconds,
        len(train_x),
        len(val_x),
        split.skipped,
        len(split.classes),
        epoch_losses,
    )


def train(
    featurizer,
    classifier,
    cfg: FineTuneConfig,
    prep: Preprocessing,
    train_data,
    val_data,
    progress: bool,
    report: Callable[[str], None],
    epoch_losses: list[float] | None = None,
) -> tuple[int, int, float]:
    """The epoch loop; leaves the best epoch's weights in place: (epochs run, best epoch, accuracy).
    Each epoch's mean loss is appended to `epoch_losses`, when given."""
    images, labels = train_data
    classes = classifier.classes
    batch = min(cfg.batch_size, len(images))
    steps = len(images) // batch  # the last, partial batch is dropped (BatchNorm dislikes tiny ones)
    params = featurizer.collect_params()
    params.update(classifier.collect_params())
    schedule = mx.lr_scheduler.CosineScheduler(
        max_update=cfg.epochs * steps,
        base_lr=cfg.lr,
        final_lr=cfg.lr * 1e-3,
        warmup_steps=min(cfg.warmup_epochs * steps, cfg.epochs * steps // 4),
        warmup_begin_lr=cfg.lr * 0.1,
    )
    trainer = mx.gluon.Trainer(params, "nag", {"momentum": 0.9, "wd": WEIGHT_DECAY, "lr_scheduler": schedule})
    augment = CameraAugment(prep.height)
    base, embed = featurizer[0], featurizer[1]

    def make_batch(epoch: int, chosen: np.ndarray):
        rng = np.random.default_rng([cfg.seed, epoch, int(chosen[0])])  # the same for every run
        return np.stack([preprocess(augment(images[i], rng), prep) for i in chosen]), labels[chosen]

    def step(x: np.ndarray, y: np.ndarray) -> float:
        x, target = mx.nd.array(x), mx.nd.one_hot(mx.nd.array(y), classes)
        frozen = base(x) if cfg.freeze_base else None  # outside record: inference-mode BatchNorm
        with mx.autograd.record():
            cosine = classifier(embed(frozen) if cfg.freeze_base else featurizer(x))
            logits = COSINE_SCALE * (cosine - COSINE_MARGIN * target)
            soft = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / classes
            loss = -(soft * mx.nd.log_softmax(logits)).sum(axis=1)
        loss.backward()
        trainer.step(len(y))
        return float(loss.mean().asscalar())

    best_accuracy, best_epoch, best_weights = -1.0, 0, {}
    bar = tqdm(range(1, cfg.epochs + 1), desc="fine-tune", unit="epoch", disable=not progress)
    with ThreadPoolExecutor(max_workers=1) as pool:  # augments the next batch while one trains
        for epoch in bar:
            epoch_start = time.time()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(images))
            batches = [order[i * batch : (i + 1) * batch] for i in range(steps)]
            pending = pool.submit(make_batch, epoch, batches[0])
            losses = []
            for index in range(steps):
                x, y = pending.result()
                if index + 1 < steps:
                    pending = pool.submit(make_batch, epoch, batches[index + 1])
                losses.append(step(x, y))
                bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_acc=f"{max(best_accuracy, 0):.3f}")
            if epoch_losses is not None:
                epoch_losses.append(float(np.mean(losses)))
            accuracy = val_accuracy(featurizer, classifier, *val_data, batch)
            if accuracy >= best_accuracy:  # ties go to the later, longer-trained epoch
                best_accuracy, best_epoch = accuracy, epoch
                best_weights = {name: p.data().copy() for name, p in params.items()}
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_acc=f"{accuracy:.3f}")
            report(
                f"epoch {epoch}/{cfg.epochs}: loss {np.mean(losses):.4f}, val accuracy {accuracy:.4f} "
                f"(best {best_accuracy:.4f} at {best_epoch}), {time.time() - epoch_start:.0f}s"
            )
            if epoch - best_epoch >= cfg.patience:
                report(f"early stop: validation accuracy not better for {cfg.patience} epochs")
                break
    bar.close()
    for name, value in best_weights.items():
        params[name].set_data(value)
    return epoch, best_epoch, best_accuracy


def val_accuracy(featurizer, classifier, x: np.ndarray, y: np.ndarray, batch: int) -> float:
    correct = 0
    for start in range(0, len(x), batch):
        cosine = classifier(featurizer(mx.nd.array(x[start : start + batch]))).asnumpy()
        correct += int((cosine.argmax(axis=1) == y[start : start + batch]).sum())
    return correct / len(x)


def start_network(cfg: FineTuneConfig) -> Start:
    """The base network and its preprocessing, from --from, --pretrained or initialised weights."""
    if cfg.start_from is None:
        size = cfg.image_size or 128
        return Start(
            zoo_base(cfg.arch, cfg.pretrained),
            Preprocessing(height=size, width=size),
            cfg.arch,
            f"{cfg.arch}, {'ImageNet' if cfg.pretrained else 'initialised'} weights",
        )
    source = Featurizer(cfg.start_from)  # checks the directory and gives its fingerprint
    spec = source.spec
    internals = mx.sym.load(str(cfg.start_from / spec.symbol_file)).get_internals()
    names = internals.list_outputs()
    layer = spec.output_layer if spec.output_layer in names else spec.output_layer + "_output"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cannot decide type for data": it is float32
        base = mx.gluon.SymbolBlock(internals[layer], mx.sym.var("data"))
    base.collect_params().load(
        str(cfg.start_from / spec.params_file), ctx=mx.cpu(), allow_missing=False, ignore_extra=True
    )
    old = spec.preprocessing
    size = cfg.image_size or old.height
    prep = Preprocessing(
        height=size, width=size, color_order=old.color_order, mean=old.mean, std=old.std, resize=old.resize
    )
    rounds = 1  # fine-tunes chain: ft1_ layers on an exported zoo net, ft2_ on those, ...
    while any(name.startswith(f"ft{rounds}_") for name in names):
        rounds += 1
    return Start(
        base,
        prep,
        spec.arch,
        f"{cfg.start_from} (fingerprint {source.fingerprint[:12]})",
        layer_prefix=f"ft{rounds}_",
    )


def read_split(cfg: FineTuneConfig) -> Split:
    """Read the catalog(s) and choose the validation images; fails early on unusable data."""
    skipped: list[str] = []
    root, items = labelled_items(cfg.data, skipped)
    classes = sorted({item.category for item in items})
    if len(classes) < 2:
        raise CatalogError(f"{cfg.data}: only one category ({classes[0]}); fine-tune needs at least two")
    if cfg.val is None:
        train, val = stratified_split(items, cfg.val_fraction, np.random.default_rng(cfg.seed))
        source = f"stratified hold-out of {cfg.val_fraction:.0%} of {cfg.data} (seed {cfg.seed})"
        return Split(classes, (root, train), (root, val), source, skipped)
    val_root, val = labelled_items(cfg.val, skipped)
    for item in val:
        if item.category not in classes:
            skipped.append(f"{val_root / item.where}: category {item.category!r} is not in {cfg.data}")
    val = [item for item in val if item.category in classes]
    return Split(classes, (root, items), (val_root, val), str(cfg.val), skipped)


def labelled_items(path: Path, skipped: list[str]) -> tuple[Path, list[CatalogItem]]:
    """The catalog's folder and its rows that have a category; other rows go to `skipped`."""
    catalog = read_catalog(path)
    skipped.extend(f"{catalog.root / p.where}: {p.reason}" for p in catalog.problems)
    items = [item for item in catalog.items if item.category]
    if not items:
        raise CatalogError(
            f"{catalog.location}: no categories (fine-tune needs class folders " f"or a category column)"
        )
    skipped.extend(f"{catalog.root / i.where}: no category" for i in catalog.items if not i.category)
    return catalog.root, items


def stratified_split(items: list[CatalogItem], fraction: float, rng: np.random.Generator):
    """Hold out `fraction` of every category (at least one image where it has two or more)."""
    train, val = [], []
    for category in sorted({item.category for item in items}):
        group = [item for item in items if item.category == category]
        order = rng.permutation(len(group))
        count = max(1, round(fraction * len(group))) if len(group) >= 2 else 0
        val += [group[i] for i in sorted(order[:count])]
        train += [group[i] for i in sorted(order[count:])]
    return train, val


def load_images(
    root: Path,
    items: list[CatalogItem],
    label: dict,
    skipped: list[str],
    progress: bool,
    convert: Callable[[np.ndarray], np.ndarray],
):
    """Decode every image once, keep `convert(image)` and its label; unreadable ones are skipped."""
    kept, labels = [], []
    for item in tqdm(items, desc=f"reading {root.name}", unit="img", disable=not progress, leave=False):
        try:
            image = decode_image(read_image_bytes(root, item.image), item.image)
        except ImageError as exc:
            reason = str(exc).removeprefix(f"{item.image}: ") if item.where == item.image else str(exc)
            skipped.append(f"{root / item.where}: {reason}")
            continue
        kept.append(convert(image))
        labels.append(label[item.category])
    return kept, np.asarray(labels, dtype=np.int64)
