"""The cached strategy catalog matches the registry; the early check rejects only what the parser rejects."""

from __future__ import annotations

import pytest

from imbvision.catalog import precheck_strategies, strategy_catalog
from imbvision.errors import ConfigError
from imbvision.strategies import list_strategies, parse_strategies


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMBVISION_CACHE", str(tmp_path))


def test_catalog_matches_the_registry_and_is_cached(tmp_path):
    live = [(r.name, r.family, r.reference, list(r.params)) for r in list_strategies()]
    first = strategy_catalog()
    assert [(r["name"], r["family"], r["reference"], list(r["params"])) for r in first] == live
    files = list((tmp_path / "catalog").glob("strategies-*.json"))
    assert len(files) == 1
    assert strategy_catalog() == first  # read back from the file


@pytest.mark.parametrize("text", ["default", "all", "ce", "focal:gamma=2,alpha=0.25+balanced-sampler",
                                  "ce,weighted-ce,focal:gamma=1", "copy-paste:ratio=0.5+mixup"])
def test_valid_strings_pass(text):
    precheck_strategies(text)


@pytest.mark.parametrize("text, fragment", [("focall", "Did you mean 'focal'"), ("focal:gama=2", "no parameter 'gama'"),
                                            ("ce,smote-tomk", "unknown strategy 'smote-tomk'")])
def test_errors_read_as_the_full_parser_words_them(text, fragment):
    with pytest.raises(ConfigError, match=fragment) as early:
        precheck_strategies(text)
    if "," not in text:
        with pytest.raises(ConfigError) as full:
            parse_strategies(text)
        assert str(full.value) == str(early.value)


def test_backbones_listing_is_the_registry_and_imports_no_torch():
    import subprocess
    import sys

    from imbvision.backbones.offline import embedded_backbones
    from imbvision.backbones.registry import list_backbones

    assert [(b.name, b.description) for b in list_backbones()][:len(embedded_backbones())] == embedded_backbones()
    code = ("import sys; from imbvision.cli import app\n"
            "try:\n    app(['backbones'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and "efficientnet_lite2" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == "False"  # listed without importing torch (2.9 s → 0.2 s)
