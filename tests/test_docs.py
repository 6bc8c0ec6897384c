"""The README tells the truth about the configuration and finds its examples to run."""

from api.config import markdown_table
from tests import readme_examples
from tests.stack import REPO


def test_readme_shows_the_current_configuration_table():
    assert markdown_table() in (REPO / "README.md").read_text(), "run `python -m api.config` and paste the table"


def test_every_curl_example_at_the_local_stack_is_run_and_has_its_answer_checked():
    # tests/test_e2e.py runs what stack_examples finds: an example it misses is never run.
    readme = (REPO / "README.md").read_text()
    curls = [number for number, line in enumerate(readme.splitlines(), start=1)
             if line.startswith(("curl -s " + readme_examples.STACK_URL, "curl -s " + readme_examples.METRICS_URL))]
    found = [example for block in readme_examples.stack_examples(readme) for example in block]
    assert sorted(example.line for example in found if example.command.startswith("curl ")) == curls
    answered = [example for example in found if example.expected]
    assert len(answered) >= 8, "the API section's examples show their answers"
