"""The display's settings: one table (key, default, help), read from its Greengrass configuration.

Settings marked `live` take effect in the running component on a configuration update;
changing any other one rebuilds the component (pages served again, subscriptions renewed).
See `components/common/settings.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from components.common.settings import setting

COMPONENT = "display"
GREENGRASS_NAME = "com.visualsearch.Display"
CURRENCY = re.compile(r"^[A-Z]{3}$")  # ISO 4217
LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # a BCP 47 tag such as en-US or de-CH


@dataclass(frozen=True)
class DisplaySettings:
    # Keys of older versions that a device may still hold: old name -> what became of it.
    # They are logged and ignored, never refused. Add one here whenever a key is renamed or dropped.
    RETIRED: ClassVar[dict[str, str]] = {}

    host: str = setting(
        "127.0.0.1",
        "Address the pages are served on. Only this device by default; "
        "serving other machines (e.g. 0.0.0.0) must be set explicitly.",
    )
    allowed_hosts: str = setting(
        "",
        "Comma-separated host names the pages answer to besides IP addresses and "
        "localhost (e.g. kiosk-12.store.example); any other Host header is refused, "
        "so a web page cannot reach the kiosk by DNS rebinding.",
        live=True,
    )
    port: int = setting(8080, "TCP port of the pages (0 picks a free port and logs it).", min=0, max=65535)
    bundle_dir: str = setting(
        "",
        "Index bundle read for catalog thumbnails and keyword search; "
        "empty = the bundle local_search announces in its status.",
    )
    work_dir: str = setting(
        "",
        "Directory where uploads are saved (under uploads/); empty = the "
        "current directory, which Greengrass sets to the component's work dir. "
        "The featurizer reads query files only from its upload_dir: change both together.",
    )
    upload_timeout_s: float = setting(
        15.0, "Seconds an upload search waits for its matches.", min=0.5, max=300.0, live=True
    )
    max_upload_mb: float = setting(20.0, "Largest upload accepted, in MiB (larger: 413).", min=0.1, max=500.0)
    max_clip_s: float = setting(
        30.0, "Longest video clip accepted, in seconds.", min=1.0, max=600.0, live=True
    )
    keep_uploads: int = setting(
        20, "Uploaded files kept on disk; older ones are deleted.", min=1, max=1000, live=True
    )
    idle_after_s: float = setting(
        20.0, "Seconds without a camera match before the kiosk shows its idle screen.", min=1.0, live=True
    )
    status_timeout_s: float = setting(
        35.0, "A watched component with no status for this long is shown as down.", min=1.0, live=True
    )
    watched_components: str = setting(
        "featurizer,local_search,display",
        "Comma-separated components whose "
        "status the kiosk watches (each needs a subscribe policy in the recipe); "
        "the display's own status coming back proves its IPC link works.",
    )
    history_size: int = setting(8, "Recent camera queries kept and shown.", min=1, max=100)
    max_event_clients: int = setting(
        16, "Live-update (SSE) connections served at once (more: 503).", min=1, max=256
    )
    http_threads: int = setting(
        8,
        "Threads serving page and API requests; each live-update connection has "
        "one more of its own (max_event_clients), and idle connections take none.",
        min=1,
        max=64,
    )
    keyword_limit: int = setting(
        24, "Items shown for a keyword search without an image.", min=1, max=500, live=True
    )
    status_interval_s: float = setting(
        10.0, "Seconds between this component's status messages.", min=1.0, live=True
    )
    currency: str = setting(
        "USD",
        "ISO 4217 code of the catalog's prices (e.g. EUR, GBP); the kiosk shows a numeric "
        "price in it, and any other price text as written in the catalog.",
        live=True,
    )
    locale: str = setting(
        "en-US",
        "BCP 47 language tag (e.g. en-GB, de-DE, fr-CA) for prices and dates on the kiosk.",
        live=True,
    )

    def problems(self) -> list[str]:
        found = []
        if not CURRENCY.match(self.currency):
            found.append(
                f"{COMPONENT}.currency: {self.currency!r} is not a 3-letter ISO 4217 code such as USD"
            )
        if not LOCALE.match(self.locale):
            found.append(f"{COMPONENT}.locale: {self.locale!r} is not a language tag such as en-US")
        return found

    def watched(self) -> list[str]:
        return [name.strip() for name in self.watched_components.split(",") if name.strip()]
