"""A Redis restart under a real worker: one WARNING line per reconnect attempt, no ERROR and no traceback.

Restarts the machine's Redis the way tests/integration/test_service_restarts.py does.
"""

from __future__ import annotations

import time

import pytest

from runs.models import Run
from runs.services.runs import run_start
from tests.integration.processes import wait_for, worker
from tests.integration.test_service_restarts import _redis_restart

pytestmark = [pytest.mark.integration]

DOWN_SECONDS = 4.0


def _completed(run_id: int) -> bool:
    return Run.objects.get(pk=run_id).status == "COMPLETED"


def test_a_redis_restart_logs_one_warning_per_reconnect_attempt_and_no_error(postgres_db: None, redis_url: str) -> None:
    # A 60 s poll: a run finishing within seconds was woken through the channel layer.
    with worker("--poll", "60") as proc:
        first = run_start(graph_name="t-count", data={"target": 2})
        assert wait_for(lambda: _completed(first.pk), timeout=20), proc.output
        time.sleep(0.5)  # the dispatch consumer that took the wake-up is now listening too

        _redis_restart(DOWN_SECONDS)
        reconnected = wait_for(lambda: "channel layer listener stopped" in proc.output, timeout=30)
        assert reconnected, proc.output
        time.sleep(4)  # past the listener's backoff at the time Redis came back
        back = len(proc.lines)
        second = run_start(graph_name="t-count", data={"target": 2})
        assert wait_for(lambda: _completed(second.pk), timeout=20), proc.output

    assert proc.proc is not None and proc.proc.returncode == 0, proc.output
    assert "Traceback" not in proc.output, proc.output
    assert not [line for line in proc.lines if " ERROR " in line], proc.output
    stopped = [line for line in proc.lines if "channel layer listener stopped" in line]
    assert stopped, proc.output
    assert all(" WARNING " in line and "reconnecting in" in line for line in stopped), stopped
    # The first broadcasts after the restart go out on new connections, not lost on closed ones.
    assert not [line for line in proc.lines[back:] if "could not send" in line], proc.output
