"""The project's --plugin for the peer harness (../shared/peers, run.sh picks this file up): the CMO engine
in-process, the way one of its worker threads executes a run: run_start -> run_claim ->
Executor(DjangoCheckpointer, policy=the registered policy engine).run(), on PostgreSQL, with the
channel-layer loop thread a worker has. Keep it doing exactly that as the code changes.

Run (the bench venv needs the project's requirements.txt installed too):
    CMO_SRC=<project root> python bench_peers.py --runs 50 \
        --plugin cmo_plugin.py:CMO
The database is CMO_PEER_DB_<name> (default cmo_peer_cmo), dropped and created at setup.
Variants: CMONoPolicy leaves the Rego check out; CMORedis uses channels-redis (CMO_PEER_REDIS).
"""
import itertools
import os
import sys
import uuid

import psycopg
from bench_peers import FirstStep, System, initial_state, node_update, pc

_FS: list = [None]
GRAPH = "peer-linear"


def _define_graph(n: int) -> None:
    from runs.engine import END, graph, node

    names = [f"p{i:02d}" for i in range(n)]
    for i, name in enumerate(names):
        def body(state, ctx, i=i):
            _FS[0].mark()
            return ctx.result(node_update(state, i))
        body.__name__ = f"peer_node_{i:02d}"
        node(name)(body)
    edges = [*itertools.pairwise(names), (names[-1], END)]
    graph(GRAPH, entry=names[0], edges=edges, max_steps=n + 5)


class CMO(System):
    name = "cmo"
    durable = "yes"
    use_policy = True
    redis_url = ""

    def setup(self):
        src = os.environ.get("CMO_SRC")
        if not src:
            raise SystemExit("set CMO_SRC to a checkout of the project")
        sys.path.insert(0, src)
        db = os.environ.get("CMO_PEER_DB", "cmo_peer") + "_" + self.name
        with psycopg.connect(self.args.dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{db}"')
        base = self.args.dsn.rsplit("/", 1)[0]
        if base.startswith("postgresql://"):
            base = "postgres://" + base[len("postgresql://"):]
        os.environ["DATABASE_URL"] = f"{base}/{db}"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmo_site.settings")
        os.environ["DEBUG"] = "false"
        os.environ.setdefault("SECRET_KEY", "peer-bench-" + "x" * 40)
        os.environ["CMO_LOG_LEVEL"] = "WARNING"
        if self.redis_url:
            os.environ["REDIS_URL"] = self.redis_url
        else:
            os.environ.pop("REDIS_URL", None)
        import django
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        _define_graph(self.n)
        from runs.services.graphs import graph_sync_all
        graph_sync_all()
        from runs.engine.executor import Executor
        from runs.engine.plugins import NO_POLICY, PLUGINS
        from runs.services.run_store import DjangoCheckpointer
        policy = PLUGINS.policy() if self.use_policy else NO_POLICY  # as runs.worker.host does
        self.owner = "peer-" + uuid.uuid4().hex[:6]
        cp = DjangoCheckpointer(owner=self.owner, abort_flag=lambda run_id: False)
        self.executor = Executor(cp, policy=policy)
        # as the worker command does: a loop thread that carries channel-layer sends
        import asyncio
        import threading

        from cmo_site.shared.live import set_main_loop
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        set_main_loop(loop)
        from runs.services.leases import run_claim
        from runs.services.runs import run_start
        self.run_start, self.run_claim = run_start, run_claim

    def teardown(self):
        self.executor.close()
        from django.db import connections
        connections.close_all()

    def run(self):
        _FS[0] = fs = FirstStep()
        t0 = pc()
        run = self.run_start(graph_name=GRAPH, data=initial_state())
        self.run_claim(run_id=run.pk, owner=self.owner)
        outcome = self.executor.run(run.pk)
        while outcome.value == "yielded":
            self.run_claim(run_id=run.pk, owner=self.owner)
            outcome = self.executor.run(run.pk)
        if outcome.value != "completed":
            raise RuntimeError(f"cmo run ended {outcome}")
        run.refresh_from_db()
        return t0, fs.t, run.state if hasattr(run, "state") else {}


class CMONoPolicy(CMO):
    name = "cmo_nopol"
    use_policy = False


class CMORedis(CMO):
    """Production shape: channels-redis carries the wake-ups and live updates."""
    name = "cmo_redis"
    redis_url = os.environ.get("CMO_PEER_REDIS", "redis://127.0.0.1:6379/13")
