"""Every ```python block of the README and of the docs pages runs; every ```toml block is a valid config.

The blocks of one page run in order in one namespace (a later block may use an earlier
one's names), in a fresh process. A traceback names the page and its line, e.g.
``File "docs/guides/scale.md", line 42``. Mark a block that must not run with
``<!-- skip: why -->`` on the line before it.
"""

from __future__ import annotations

import json
import tomllib

import pytest

from tests.docs.run_docs import PAGES, fenced_blocks, python_blocks, relative, run_python, tail

RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for line, code in json.load(open(sys.argv[2])):
    exec(compile("\\n" * (line - 1) + code, sys.argv[1], "exec"), namespace)
"""

PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)]


def test_the_pages_have_code_to_run():
    assert {"README.md", "docs/index.md"} <= {relative(page) for page in PAGES_WITH_CODE}


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=relative)
def test_python_blocks_run(page, tmp_path):
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps(python_blocks(page)))
    result = run_python(["-c", RUNNER, relative(page), str(blocks)], cwd=tmp_path)
    assert result.returncode == 0, f"{relative(page)}: a Python block raised:\n{tail(result)}"


def test_a_skip_marker_only_skips_the_block_after_it(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- skip: needs a cluster -->\n```python\nskipped()\n```\n\ntext\n\n```python\nx = 1\n```\n")
    assert python_blocks(page) == [(9, "x = 1\n")]  # the line of the code itself


PAGES_WITH_CONFIGS = [page for page in PAGES if fenced_blocks(page, "toml")]


def test_the_guides_show_configs():
    assert {"docs/guides/your-data.md", "docs/guides/active.md"} <= {relative(page) for page in PAGES_WITH_CONFIGS}


@pytest.mark.parametrize("page", PAGES_WITH_CONFIGS, ids=relative)
def test_config_blocks_use_only_known_keys(page):
    from gpllm.configs import check_config

    for line, block in fenced_blocks(page, "toml"):
        check_config(tomllib.loads(block), f"{relative(page)}, line {line}")
