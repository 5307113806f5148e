"""Expected failures of any command are one line naming the file, never a traceback (issue 14, item 9)."""

from click.testing import CliRunner

from cloud_sync.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_an_unwritable_out_is_one_line_naming_it(class_folders, tiny_model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run("build-index", class_folders, "--model", tiny_model, "--out", blocker / "bundle")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {blocker}")
    assert not isinstance(result.exception, OSError)
