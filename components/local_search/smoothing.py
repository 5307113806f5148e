"""Steady rankings while one item is held: average each candidate's score over the last
few queries of the same track, so the shown top-k does not flicker between near-ties."""

from __future__ import annotations

from collections import OrderedDict, deque


class RankSmoother:
    def __init__(self, window: int = 3, max_tracks: int = 64):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.max_tracks = max_tracks
        self._tracks: OrderedDict[str, deque] = OrderedDict()

    def update(self, track_id: str, scores: dict[int, float]) -> list[tuple[int, float]]:
        """Add one query's {faiss_id: score}; return [(faiss_id, smoothed score)], best first.

        A candidate missing from a query counts as that query's lowest score, so an item
        seen once at the edge of the top-k does not outrank one seen every time.
        """
        if not track_id or self.window == 1:
            return sorted(scores.items(), key=lambda kv: -kv[1])
        history = self._tracks.pop(track_id, None) or deque(maxlen=self.window)
        history.append(scores)
        self._tracks[track_id] = history
        while len(self._tracks) > self.max_tracks:
            self._tracks.popitem(last=False)
        candidates = set().union(*history)
        smoothed = {}
        for faiss_id in candidates:
            values = [q.get(faiss_id, min(q.values(), default=0.0)) for q in history]
            smoothed[faiss_id] = sum(values) / len(values)
        return sorted(smoothed.items(), key=lambda kv: (-kv[1], kv[0]))

    def forget(self, track_id: str) -> None:
        self._tracks.pop(track_id, None)
