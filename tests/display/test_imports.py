"""The display depends on components.common only: it never loads the other components (or faiss, MXNet)."""

import json
import subprocess
import sys

from tests.conftest import REPO


def test_the_display_loads_no_other_component_nor_their_libraries():
    code = (
        "import json, sys, components.display.app, components.display.component; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
        ).stdout
    )
    components = {name for name in loaded if name.startswith("components.")}
    assert {name.split(".")[1] for name in components} == {"common", "display"}
    assert not {"faiss", "mxnet"} & set(loaded)
