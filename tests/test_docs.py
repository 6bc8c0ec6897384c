"""The README tells the truth about the configuration."""

from api.config import markdown_table
from tests.stack import REPO


def test_readme_shows_the_current_configuration_table():
    assert markdown_table() in (REPO / "README.md").read_text(), "run `python -m api.config` and paste the table"
