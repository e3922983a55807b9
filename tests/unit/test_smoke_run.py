import pytest

from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_counting_run_completes_with_one_step_per_node_call() -> None:
    run = start_and_execute("t-count", {"target": 4})
    assert run.status == "COMPLETED", run.error
    assert run.state == {"target": 4, "n": 4}
    assert list(run.steps.values_list("index", "edge")) == [(0, "again"), (1, "again"), (2, "again"), (3, "done")]
