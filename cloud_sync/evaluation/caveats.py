"""Warnings for figures that cannot mean anything, printed beside them by `evaluate` and
`fine-tune` (and kept in evaluate's JSON as "warnings"): a single-category catalog makes every
item relevant, a handful of validation images makes an accuracy of 1.0 luck, and a loss that
rose means the model did not learn whatever its best epoch scored.
"""

from __future__ import annotations

MIN_QUERIES = 10  # fewer: one query moves P@1 by more than 0.1
RANDOM_P1_TOO_HIGH = 0.5  # a random ranking that does this well leaves nothing to measure
MIN_VAL_IMAGES = 10
LOSS_ROSE = 1.05  # last epoch's loss above the first's by more than this factor


def evaluation_caveats(evaluation) -> list[str]:
    """What makes an `Evaluation`'s figures meaningless or rough."""
    out = []
    queries = len(evaluation.queries.items)
    if evaluation.ground_truth == "category":
        categories = sorted({item.category for item in evaluation.catalog.items})
        if len(categories) <= 1:
            out.append(
                f"every catalog item is in one category ({', '.join(map(repr, categories)) or 'none'}): "
                f"every item is relevant to every query, so each figure (the random baseline's too) is "
                f"1.000 by construction; evaluate on a catalog of several categories"
            )
    random_p1 = evaluation.results.get("random", {}).get("precision_at_1", 0.0)
    if random_p1 >= RANDOM_P1_TOO_HIGH and not any("one category" in line for line in out):
        out.append(
            f"a random ranking already scores P@1 {random_p1:.3f}: most of the catalog is relevant to "
            f"each query, so these figures cannot tell a good model from a poor one"
        )
    if queries and evaluation.no_relevant == queries:
        out.append(
            "no query has a relevant catalog item: every figure is 0 by construction "
            "(are the queries' categories or item_ids the catalog's?)"
        )
    if queries < MIN_QUERIES:
        out.append(
            f"only {queries} queries: each one moves P@1 by {1 / max(queries, 1):.2f}; "
            f"the figures are rough"
        )
    return out


def training_caveats(val_count: int, classes: int, epoch_losses: list[float]) -> list[str]:
    """What makes a fine-tune's validation figure meaningless: too few images, a rising loss."""
    out = []
    if val_count < max(MIN_VAL_IMAGES, 2 * classes):
        of = f" of {classes} categories" if classes else ""
        out.append(
            f"validation accuracy is measured on {val_count} image(s){of}: one image "
            f"more or less right moves it by {1 / max(val_count, 1):.2f}, so it means little; give more "
            f"validation images (--val, or more data)"
        )
    if len(epoch_losses) >= 2 and epoch_losses[-1] > LOSS_ROSE * epoch_losses[0]:
        out.append(
            f"the training loss rose from {epoch_losses[0]:.3f} (epoch 1) to {epoch_losses[-1]:.3f} "
            f"(epoch {len(epoch_losses)}): training diverged (try a lower --lr), whatever the "
            f"validation figure says"
        )
    return out
