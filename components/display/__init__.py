"""display component: the kiosk page on the monitor beside the camera, and the staff search page.

Fed only by IPC (`visualsearch/matches`, `visualsearch/status/*`); uploads travel the real
path (display -> `visualsearch/queries` -> featurizer -> local_search -> matches).
"""
