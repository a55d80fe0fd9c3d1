"""The examples of the Architecture page (`docs/architecture.md`) run, in order, in
one namespace: each ends with assertions against closed forms."""

import re
from pathlib import Path


PAGE = Path(__file__).parent.parent / "docs" / "architecture.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_page_has_one_example_per_extension_point():
    text = PAGE.read_text()
    assert len(code_blocks(text)) == 3
    for heading in (
        "## Adding a condition",
        "## Adding a solver",
        "## Adding an adjoint",
    ):
        assert heading in text


def test_the_examples_run():
    namespace: dict = {}
    for block in code_blocks(PAGE.read_text()):
        exec(compile(block, str(PAGE), "exec"), namespace)
    # The last example defined and checked the forward-only unrolled derivative.
    assert "ForwardUnrolled" in namespace
