"""The multi-host faults (#24), each injected into the running `ClusterStack` under load on both hosts (or on the
one that survives) and measured into a `Row`, as scripts/chaos/faults.py does for one machine:

    Redis primary SIGKILL       the Sentinels promote the replica; host a follows through them, host b through
                                its one address; the old primary is held down until then (a lost node)
    primary replaced behind     a planned failover (SENTINEL FAILOVER: the old primary demoted, still up) while
    one address                 the endpoint leaves open connections where they were: READONLY for a moment
    volume server killed        one of three volume servers SIGKILLed and held down; every object stored before
                                must stay readable, and what is erased meanwhile must be gone from every copy
                                once the server is back
    whole host killed           host a's gateway, worker and janitor SIGKILLed at once while host a's worker
                                paints; clients keep using host b

"Recover" is the seconds from the fault until a job accepted after it is done.
"""

from __future__ import annotations

import sys
import time

import redis
import requests

from scripts.chaos.cluster import SYNC_DELETIONS, ClusterStack, wait_for
from scripts.chaos.faults import (
    KILL_DONE_WITHIN,
    Plan,
    Row,
    Session,
    _ended,
    _first_done_after,
    _job_being_painted,
    _orphans,
)
from scripts.devstack import LOOPBACK
from scripts.devstack.copies import chunk_file_ids, copies
from shared.jobs import JobStore
from shared.leases import JobLeases

COPIES_GONE_WITHIN = 2 * SYNC_DELETIONS + 15.0  # after the server's return: its next sync of missed deletions
_STARTED = time.monotonic()


def _say(what: str) -> None:
    """A progress line on stderr: these rows wait on servers for tens of seconds at a time."""
    print(f"[chaos {time.monotonic() - _STARTED:6.1f} s]   {what}", file=sys.stderr, flush=True)


def _urls(stack: ClusterStack) -> list[str]:
    return [host.gateway_url for host in stack.hosts.values()]


def _finish(stack: ClusterStack, row: Row, job_id: str | None, jobs: JobStore, refused_before: float) -> None:
    """The in-flight job's end, and the targets every multi-host row shares."""
    if job_id:
        wait_for(lambda: _ended(jobs, job_id), 120, interval=0.2)
        job = jobs.get(job_id)
        state = job.state.value if job else "gone"
        row.notes.append(f"in-flight job {state}")
        if state != "done":
            row.problems.append(f"the in-flight job ended {state}")
    if row.recover is None:
        row.problems.append("no job accepted after the fault was painted")
    elif row.recover > KILL_DONE_WITHIN:
        row.problems.append(f"recovery took {row.recover:.1f} s (target ≤ {KILL_DONE_WITHIN:.0f} s)")
    if sum(row.failed.values()):
        row.problems.append(f"jobs failed: {dict(row.failed)}")
    refused = max(0.0, _refused(stack) - refused_before)  # a gateway killed with its host starts again from 0
    row.notes.append(f"uploads refused for want of a replica: {refused:.0f}")


def _refused(stack: ClusterStack) -> float:
    return sum(_metric(url, "portraits_gateway_unreplicated_uploads_total") for url in _urls(stack))


def _metric(gateway_url: str, name: str) -> float:
    try:
        text = requests.get(gateway_url + "/metrics", timeout=2).text
    except requests.RequestException:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _primary_program(stack: ClusterStack) -> tuple[str, int]:
    primary = stack.redis.primary
    return f"redis-{stack.redis.servers.index(primary)}", primary.port


def sentinel_failover(stack: ClusterStack, plan: Plan, photo: bytes) -> Row:
    jobs = JobStore(stack.redis_client(), stack.settings.job_ttl_seconds)
    refused_before = _refused(stack)
    stack.redis.wait_for_replicas(1)
    with Session(stack, "Redis primary SIGKILL, Sentinel failover", plan.clients, photo, _urls(stack)) as session:
        job_id = _job_being_painted(stack)
        program, port = _primary_program(stack)
        killed_at = time.time()
        with stack.held_down(program):
            stack.programs[program].kill()
            promoted = stack.redis.wait_for_failover(port, timeout=60)
            time.sleep(plan.failover_hold)
        session.row.recover = _first_done_after(session, killed_at)
        back = wait_for(lambda: stack.redis.wait_for_replicas(1, timeout=1) is not None, 60)
        session.row.notes.append(f"replica promoted {promoted:.1f} s after the kill")
        if back is not None:
            session.row.notes.append(f"old primary a replica again {back:.1f} s after its return")
    _finish(stack, session.row, job_id, jobs, refused_before)
    return session.row


def endpoint_replaced(stack: ClusterStack, plan: Plan, photo: bytes) -> Row:
    jobs = JobStore(stack.redis_client(), stack.settings.job_ttl_seconds)
    refused_before = _refused(stack)
    stack.redis.wait_for_replicas(1)
    stack.endpoint.drop = False  # open connections stay on the old primary, which is demoted and answers READONLY
    try:
        with Session(
            stack, "Redis primary replaced behind one address", plan.clients, photo, _urls(stack)[::-1]
        ) as session:
            job_id = _job_being_painted(stack)
            port = stack.redis.primary_port()
            assert port is not None
            replaced_at = time.time()
            stack.redis.sentinels[0].client(timeout=5).sentinel_failover(stack.redis.master_name)
            promoted = stack.redis.wait_for_failover(port, timeout=60)
            # The provider demotes the old node as it promotes the new one, and its connections end (a replaced
            # node's, or the CLIENT KILL that Sentinel sends with its own REPLICAOF). Sentinel alone would turn it
            # only at its next look (up to 10 s), and meanwhile the old primary takes the writes of connections still
            # open to it, all lost when it is turned: measured here before these lines (docs/architecture.md).
            # Connections left open on the demoted server (READONLY) are the job store's retry's; a Celery consumer
            # left blocked there stopped consuming in the full run (celery#6348, docs/architecture.md).
            old = redis.Redis(LOOPBACK, port, socket_timeout=5)
            old.replicaof(LOOPBACK, stack.redis.primary_port())
            old.client_kill_filter(_type="normal", skipme=True)
            switched = wait_for(lambda: stack.endpoint.proxy.target_port != port, 30)
            session.row.recover = _first_done_after(session, replaced_at)
            time.sleep(plan.failover_hold)
            session.row.notes.append(f"new primary {promoted:.1f} s, endpoint moved {switched or 0:.1f} s after")
    finally:
        stack.endpoint.drop = True
    _finish(stack, session.row, job_id, jobs, refused_before)
    return session.row


def volume_server_killed(stack: ClusterStack, plan: Plan, photo: bytes) -> Row:
    jobs = JobStore(stack.redis_client(), stack.settings.job_ttl_seconds)
    refused_before = _refused(stack)
    victim = stack.s3.extra_volume_servers[0]
    s3 = stack.s3.client()
    buckets = (stack.settings.sources_bucket, stack.settings.results_bucket)
    with Session(
        stack, "volume server SIGKILL (1 of 3, replication 001)", plan.clients, photo, _urls(stack)
    ) as session:
        job_id = _job_being_painted(stack)
        stored = _listing(s3, buckets)
        _say(f"{len(stored)} objects stored; recording the chunks of their sources")
        # Recorded before the kill: the chunks of the sources stored now that have a copy on the victim; the render
        # is about to erase them while it is down, and its copies must not outlive its return (docs/storage.md).
        watched = {}
        for bucket, key in stored:
            fids = chunk_file_ids(stack.s3, bucket, key) if key.startswith("sources/") else ()
            if fids and victim.url in copies(stack.s3, fids):
                watched[key] = fids
        killed_at = time.time()
        with stack.held_down(victim.process.name):
            _say(f"killing {victim.process.name}")
            victim.kill()
            time.sleep(plan.volume_down / 2)
            unreadable = [key for bucket, key in stored if not _readable(s3, bucket, key)]
            time.sleep(plan.volume_down / 2)
        _say(f"{len(unreadable)} unreadable; {victim.process.name} back")
        session.row.recover = _first_done_after(session, killed_at)
        wait_for(victim.ready, 60)
    row = session.row
    row.notes.append(f"{len(stored) - len(unreadable)}/{len(stored)} stored objects readable with one server down")
    if unreadable:
        row.problems.append(f"{len(unreadable)} objects unreadable while one volume server was down")
    erased = {key: fids for key, fids in watched.items() if fids and not _exists(s3, buckets[0], key)}
    _say(f"{len(erased)} watched sources erased; looking for their copies")
    left = {
        key
        for key, fids in erased.items()
        if wait_for(lambda f=fids: not copies(stack.s3, f), COPIES_GONE_WITHIN) is None
    }
    row.notes.append(f"{len(erased) - len(left)}/{len(erased)} sources erased while their copy was down gone from it")
    if left:
        row.problems.append(f"{len(left)} erased sources still on a volume server after its return")
    # Objects no deletion entry names: a failover in an earlier row can lose an entry (a result's, written by a
    # worker without a WAIT). The reconciliation must adopt them within a pass (CI found one, 2026-12-07).
    orphans = _orphans(stack)
    if orphans:
        adopted = wait_for(lambda: _orphans(stack) == 0, stack.settings.janitor_reconcile_seconds + 15, interval=1.0)
        if adopted is None:
            row.problems.append(f"{orphans} orphan objects not adopted by the reconciliation")
        else:
            row.notes.append(f"{orphans} orphan objects adopted by the reconciliation within {adopted:.0f} s")
    _finish(stack, row, job_id, jobs, refused_before)
    return row


def host_killed(stack: ClusterStack, plan: Plan, photo: bytes) -> Row:
    """Host a dies whole while its worker paints; clients keep using host b, which must finish host a's job."""
    client = stack.redis_client()
    jobs = JobStore(client, stack.settings.job_ttl_seconds)
    refused_before = _refused(stack)
    leases = JobLeases(client, stack.settings.job_lease_seconds)
    host_a, host_b = stack.hosts["a"], stack.hosts["b"]
    with Session(
        stack, "whole host SIGKILL (gateway, worker, janitor)", plan.clients, photo, [host_b.gateway_url]
    ) as session:
        job_id = None
        deadline = time.monotonic() + 120
        while job_id is None and time.monotonic() < deadline:
            candidate = _job_being_painted(stack, timeout=10)
            holder = leases.holder(candidate) if candidate else None
            if holder and int(holder.rpartition(":")[2]) in host_a.worker.child_pids():
                job_id = candidate
        if job_id is None:
            session.row.problems.append("host a's worker painted nothing to kill it during")
        killed_at = time.time()
        with stack.held_down(*host_a.programs):
            stack.kill_host("a")
            time.sleep(plan.host_down)
            session.row.recover = _first_done_after(session, killed_at)
            if job_id:
                wait_for(lambda: _ended(jobs, job_id), 120, interval=0.2)
                job = jobs.get(job_id)
                if job and job.finished_at:
                    session.row.notes.append(f"host a's job done by host b {job.finished_at - killed_at:.1f} s after")
    _finish(stack, session.row, job_id, jobs, refused_before)
    return session.row


def _gone_everywhere(stack: ClusterStack, fids: tuple[str, ...]) -> bool:
    return wait_for(lambda: not copies(stack.s3, fids), COPIES_GONE_WITHIN, interval=1.0) is not None


def _listing(s3: object, buckets: tuple[str, ...]) -> list[tuple[str, str]]:
    found = []
    for bucket in buckets:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # type: ignore[attr-defined]
            found += [(bucket, item["Key"]) for item in page.get("Contents", [])]
    return found


def _readable(s3: object, bucket: str, key: str) -> bool:
    try:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
    except Exception as exc:
        # Erased between the listing and this read: not a lost object.
        return "NoSuchKey" in repr(exc) or "404" in repr(exc)
    return True


def _exists(s3: object, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True
