import errno
import json

import pytest

from yeay_nb.atomic import atomic_open, write_json


def test_write_json_replaces_content(tmp_path):
    f = tmp_path / "a" / "x.json"
    write_json(f, {"a": 1})
    write_json(f, {"a": 2})
    assert json.loads(f.read_text()) == {"a": 2}
    assert [p.name for p in f.parent.iterdir()] == ["x.json"]  # no temporary files left


def test_failure_keeps_the_previous_file(tmp_path):
    f = tmp_path / "x.json"
    write_json(f, {"good": True})
    with pytest.raises(OSError):
        with atomic_open(f, "w") as out:
            out.write('{"half": ')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(f.read_text()) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
