#!/usr/bin/env python3
"""Planted bugs: does the suite notice?

Each mutant below is one deliberate bug in src/: the exact snippet it replaces
(found exactly once, or the run fails loudly so this table stays true as the
code moves), its replacement, and the tests that claim to guard that promise.
For each mutant, one scratch copy of the repository (what `git ls-files`
lists, plus untracked files not ignored) gets the mutation, is rebuilt
(`make -j2`, incremental), and only the named tests run, under a time limit.
A mutant is *caught* when one of its test commands fails (or runs out of
time); *missed* when they all pass. Exit status 1 if any is missed.

    make mutants                         # all of them
    tests/mutants/run.py -k wrr -k idle  # those whose name contains a word
    tests/mutants/run.py --list
    tests/mutants/run.py --baseline      # the named tests on the unmutated code
                                         # (they must all pass there)

Test commands: "unit:test_backend" runs build/tests/test_backend; "py:<args>"
runs pytest in tests/integration with those arguments (node ids, -k ...).
Python 3 standard library only.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
DEFAULT_LIMIT = 180  # seconds for all test commands of one mutant

IT = "py:"


def M(name, path, old, new, tests, limit=DEFAULT_LIMIT):
    return {"name": name, "file": path, "old": old, "new": new, "tests": tests, "limit": limit}


MUTANTS = [
    # (a) a non-2xx Status reply's body reaches the client
    M("a-status-body-delivered", "src/backend.c",
      "        if (r->cgi.status < 200 || r->cgi.status > 299) {",
      "        if (0) {",
      [IT + "test_promises.py::test_non_2xx_status_body_not_delivered"]),
    # (b) servers marked down are never skipped
    M("b-down-servers-not-skipped", "src/backend.c",
      "        int up = s->down_until <= now;",
      "        int up = 1 || s->down_until <= now;",
      [IT + "test_trust_backend.py::test_timeout_marks_server_down_for_fail_timeout",
       IT + "test_promises.py::test_refused_server_is_skipped"]),
    # (c) weighted random instead of smooth weighted round robin
    M("c-wrr-random", "src/backend.c",
      """    int best = -1, total = 0;
    for (int i = 0; i < n; i++) {
        if (!(eligible & (1ULL << i)))
            continue;
        w[i].current += w[i].weight;
        total += w[i].weight;
        if (best < 0 || w[i].current > w[best].current)
            best = i;
    }
    if (best >= 0)
        w[best].current -= total;
    return best;""",
      """    int total = 0;
    for (int i = 0; i < n; i++)
        if (eligible & (1ULL << i))
            total += w[i].weight;
    if (total <= 0)
        return -1;
    int x = rand() % total;
    for (int i = 0; i < n; i++) {
        if (!(eligible & (1ULL << i)))
            continue;
        if (x < w[i].weight)
            return i;
        x -= w[i].weight;
    }
    return -1;""",
      ["unit:test_backend"]),
    # (d) "Content-Length: 0" replies dropped on the length protocol
    M("d-explicit-empty-dropped", "src/client.c",
      "(evbuffer_get_length(head->reply) > 0 || head->explicit_empty)",
      "(evbuffer_get_length(head->reply) > 0)",
      [IT + "test_promises.py::test_explicit_empty_reply_is_a_message"]),
    # (e) the master keeps its old configuration on SIGHUP
    M("e-master-keeps-old-config", "src/master.c",
      """            config_free(cfg);
            *cfg = fresh;""",
      """            config_free(&fresh);""",
      [IT + "test_reload.py::test_worker_respawned_after_reload_runs_the_new_config"]),
    # (f) LOG_FILE not given to USER/GROUP
    M("f-log-owner-skipped", "src/proc.c",
      """    uid_t uid;
    gid_t gid;
    if ((cfg->user == NULL && cfg->group == NULL)""",
      """    uid_t uid;
    gid_t gid;
    return;
    if ((cfg->user == NULL && cfg->group == NULL)""",
      [IT + "test_reload.py::test_workers_running_as_user_keep_logging_after_rotation"]),
    # (g) clients switch to the new SCRIPT_FILE on reload
    M("g-clients-take-new-script", "src/client.c",
      """    if (script_has_read(c->script))
        client_read_script(c, in);""",
      """    if (script_has_read(c->w->script))
        client_read_script(c, in);""",
      [IT + "test_reload.py::test_script_clients_keep_their_protocol_across_reload"]),
    M("g2-read-with-worker-script", "src/client.c",
      "    struct script *s = c->script;\n    int waiting = 0;",
      "    struct script *s = c->w->script ? c->w->script : c->script;\n    int waiting = 0;",
      [IT + "test_reload.py::test_script_clients_keep_their_protocol_across_reload"]),
    # (h) handshake headers may collide with the gateway's params
    M("h-reserved-header-check-off", "src/wsconn.c",
      """    static const char *const own[] = {"SESSIONID", "EVENT", "UID", "SESSION"};""",
      """    return 0;
    static const char *const own[] = {"SESSIONID", "EVENT", "UID", "SESSION"};""",
      [IT + "test_trust.py::test_handshake_headers_cannot_set_gateway_params"]),
    # (i) MAX_OUTPUT_SIZE never checked
    M("i-output-limit-off", "src/client.c",
      """    struct client *c = arg;
    if (c->dead || c->over_limit)
        return;
    size_t pending""",
      """    struct client *c = arg;
    return;
    if (c->dead || c->over_limit)
        return;
    size_t pending""",
      [IT + "test_gateway.py::test_slow_consumer_disconnected",
       IT + "test_trust.py::test_ping_flood_never_read_is_cut_at_max_output_size"]),
    # (j) close events on stop posted at once (a small queue drops them)
    M("j-stop-close-events-unpaced", "src/worker.c",
      """    if (!w->stopping && !w->draining) {
        backend_post(w->pool, r);
        return;
    }""",
      """    if (1) {
        backend_post(w->pool, r);
        return;
    }""",
      [IT + "test_trust.py::test_sigterm_posts_every_close_event_with_a_small_queue"]),
    # (k) same-origin default off
    M("k-origin-any", "src/wsconn.c",
      """    char **list = c->w->cfg->allowed_origins;
    if (list == NULL)""",
      """    char **list = c->w->cfg->allowed_origins;
    return 1;
    if (list == NULL)""",
      [IT + "test_trust.py::test_origin_default_same_origin"]),
    # (l) one client may fill the whole backend queue
    M("l-queue-share-off", "src/client.c",
      """           && c->pending < CLIENT_MAX_PENDING
           && c->queued < (unsigned)backend_client_share(c->w->pool);""",
      """           && c->pending < CLIENT_MAX_PENDING;""",
      [IT + "test_trust.py::test_one_client_cannot_take_the_whole_queue"]),
    # (m) paused clients cut by the ping sweep
    M("m-paused-pinged-out", "src/wsconn.c",
      """    if (c->paused) {
        /* Not read while paused: it cannot answer, so silence proves nothing. */
        ws->heard = 1;
        return;
    }""",
      "",
      [IT + "test_trust.py::test_paused_websocket_client_is_not_cut_by_ping_timeout"]),
    # (n) MAX_CONN_PER_IP off
    M("n-conn-per-ip-off", "src/client.c",
      """    int limit = w->cfg->max_conn_per_ip;
    if (limit <= 0)
        return 0;""",
      """    int limit = w->cfg->max_conn_per_ip;
    return 0;""",
      [IT + "test_trust.py::test_max_conn_per_ip_across_workers"]),
    # (o) BACKEND_QUEUE_TIMEOUT never fires
    M("o-queue-timeout-never", "src/backend.c",
      "        event_add(&r->queue_ev, &p->queue_tv);",
      "        (void)0;",
      [IT + "test_trust_backend.py::test_queued_request_expires_client_stays"]),
    # (p) BACKEND_CONNECT_TIMEOUT ignored
    M("p-connect-timeout-ignored", "src/backend.c",
      """    conn_setcb(bc->conn, backend_readcb, NULL, backend_eventcb, bc);
    conn_set_timeouts(bc->conn, &p->connect_tv, &p->connect_tv);""",
      """    conn_setcb(bc->conn, backend_readcb, NULL, backend_eventcb, bc);""",
      [IT + "test_promises.py::test_backend_connect_timeout"]),
    # (q) IDLE_TIME not applied
    M("q-idle-time-off", "src/client.c",
      """    if (w->idle_tv)
        conn_set_timeouts(c->conn, w->idle_tv, NULL);""",
      "",
      [IT + "test_gateway.py::test_idle_time", IT + "test_promises.py::test_idle_time_posts_close_event"]),
    # (r) crash-loop back-off computed and logged, but not applied
    M("r-crash-loop-no-backoff", "src/master.c",
      "            slots[i].respawn_at = now + delay;",
      "            slots[i].respawn_at = now;",
      [IT + "test_promises.py::test_crash_loop_back_off"]),
    # (s) the 16 KiB CGI header limit removed
    M("s-cgi-header-limit-off", "src/fcgi.c",
      """        if (cp->total >= CGI_MAX_HEADER)
            return FCGI_ERROR;
        cp->total++;""",
      """        cp->total++;""",
      ["unit:test_fcgi", IT + "test_promises.py::test_cgi_header_limit"]),
    # the same, end to end only (the unit test above fails first)
    M("s2-cgi-header-limit-off-e2e", "src/fcgi.c",
      """        if (cp->total >= CGI_MAX_HEADER)
            return FCGI_ERROR;
        cp->total++;""",
      """        cp->total++;""",
      [IT + "test_promises.py::test_cgi_header_limit"]),
    # (t) MAX_CONN_PER_IP table: deleting an address leaves a hole in its probe run
    M("t-shm-no-backward-shift", "src/shm.c",
      """        unsigned cnt = atomic_load(&n->count);
        if (cnt == 0)
            break;""",
      """        unsigned cnt = atomic_load(&n->count);
        if (cnt == 0 || 1)
            break;""",
      ["unit:test_shm"]),
    M("t2-shm-shift-wrap-wrong", "src/shm.c",
      "|| (j < hole && home <= hole && home > j)",
      "|| (j < hole && home > j)",
      ["unit:test_shm"]),
    # (u) frame limit off by one: a message of exactly MAX_BUFF_SIZE refused
    M("u-frame-limit-off-by-one", "src/frame.c",
      "    return n > max ? FRAME_TOO_BIG : FRAME_OK;",
      "    return n >= max ? FRAME_TOO_BIG : FRAME_OK;",
      ["unit:test_frame"]),
    # (v) reply over MAX_OUTPUT_SIZE accepted
    M("v-reply-size-unchecked", "src/backend.c",
      "            if (have + keep > p->max_output) {",
      "            if (0) {",
      [IT + "test_promises.py::test_reply_over_max_output_size_fails_that_request_only"]),
    # (w) a live pid in PID_FILE not refused
    M("w-pid-file-live-pid-ignored", "src/proc.c",
      "old > 0 && old != getpid() && kill(old, 0) == 0) {",
      "old > 0 && old != getpid() && kill(old, 0) == 0 && 0) {",
      [IT + "test_promises.py::test_pid_file_refuses_live_pid_and_is_removed"]),
    # (x) the master never kills a worker that does not stop
    M("x-no-kill-grace", "src/master.c",
      "                        kill(slots[i].pid, SIGKILL);",
      "                        (void)0;",
      [IT + "test_promises.py::test_master_kills_a_stuck_worker_after_grace"], limit=60),
    # (y) SIGHUP leaves the log level as it was
    M("y-reload-keeps-log-level", "src/worker.c",
      """        log_open(fresh->log_file, fresh->log_level);
    log_set_level(fresh->log_level);""",
      """        log_open(fresh->log_file, fresh->log_level);""",
      [IT + "test_promises.py::test_sighup_applies_log_level"]),
    # (z) a reload sends new requests to the old pool
    M("z-reload-keeps-old-pool", "src/worker.c",
      """    backend_pool_retire(w->pool, pool);
    w->pool = pool;""",
      """    backend_pool_free(pool);""",
      [IT + "test_promises.py::test_sighup_in_flight_finish_on_old_backend"]),
    # (ab) a killed worker's clients keep counting towards MAX_CLIENT_NUM
    M("ab-dead-worker-clients-still-counted", "src/master.c",
      """            int left = atomic_exchange(&shm->workers[i].clients, 0);
            atomic_fetch_sub(&shm->clients, left);""",
      """            int left = atomic_exchange(&shm->workers[i].clients, 0);""",
      [IT + "test_promises.py::test_max_client_num_slot_freed_after_worker_killed"]),
    # (ac) -s reopen: the workers are not told
    M("ac-reopen-not-forwarded", "src/master.c",
      """                if (slots[i].pid > 0)
                    kill(slots[i].pid, SIGUSR1);""",
      """                if (0)
                    kill(slots[i].pid, SIGUSR1);""",
      [IT + "test_promises.py::test_dash_s_reopen"]),
    # (ae) script API: a buffer of another call accepted
    M("ae-script-any-buffer", "src/script.c",
      "            if (s->bufs[i] == p)",
      "            if (s->bufs[i] == p || 1)",
      ["unit:test_script", IT + "test_script.py::test_buffer_kept_from_another_call"]),
    # (af) script API: a connection of another call accepted
    M("af-script-any-conn", "src/script.c",
      "p == NULL || p != s->conn)",
      "p == NULL || (p != s->conn && 0))",
      ["unit:test_script"]),
    # (ag) no run-time limit on a handler
    M("ag-script-no-hook", "src/script.c",
      "    lua_sethook(L, script_hook, LUA_MASKCOUNT, SCRIPT_HOOK_COUNT);",
      "    lua_sethook(L, script_hook, 0, 0);",
      ["unit:test_script"], limit=15),
    # (ah) fc.close closes at once (the client is gone while the handler runs)
    M("ah-script-close-immediate", "src/script.c",
      "    c->script_close = 1;\n    return 0;",
      "    c->dead = 1;\n    return 0;",
      ["unit:test_script"]),
    # operations: graceful stop closes everyone at once
    M("ai-graceful-not-spread", "src/worker.c",
      "    int due = span <= 0 || elapsed >= span ? w->drain_total",
      "    int due = 1 ? w->drain_total",
      [IT + "test_operations.py::test_graceful_stop_spreads_closes"]),
    # operations: workers not told when their master dies
    M("aj-no-pdeathsig", "src/worker.c",
      "    prctl(PR_SET_PDEATHSIG, SIGUSR2);",
      "    (void)0;",
      [IT + "test_operations.py::test_workers_stop_when_the_master_is_killed"]),
    # operations: no default CGI params
    M("ak-no-cgi-defaults", "src/worker.c",
      "        if (config_has_param(cfg, name))\n            continue;",
      "        if (1)\n            continue;",
      [IT + "test_operations.py::test_default_cgi_params_as_sent[127.0.0.1]",
       IT + "test_operations.py::test_go_backend_with_no_fastcgi_params"]),
    # operations: a successor that never says it serves (the upgrade times out)
    M("al-upgrade-never-ready", "src/master.c",
      "                proc_upgrade_ready(ready_fd);",
      "                close(ready_fd);",
      [IT + "test_operations.py::test_binary_upgrade_without_refusing_a_connection"], limit=60),
    # a run of SEND_ALLs not sent before the next command: order lost
    M("am-send-all-run-reordered", "src/command.c",
      "        command_flush(w); /* what came before goes first */",
      "        (void)0;",
      [IT + "test_cluster.py::test_burst_of_commands_keeps_its_order_at_every_client"]),
    # reply commands: leaves applied before the body (the leaver misses its notice)
    M("an-reply-leave-before-body", "src/reply.c",
      "    if ((plan.publish || plan.broadcast) && to_self)\n",
      "    reply_leaves(w, c, p, end);\n"
      "    if ((plan.publish || plan.broadcast) && to_self)\n",
      [IT + "test_reply.py::test_join_comes_before_the_body_and_leave_after_it"]),
    # reply commands: Exclude-Self ignored
    M("ao-reply-exclude-self-ignored", "src/reply.c",
      "                plan->exclude_self = f;",
      "                plan->exclude_self = 0;",
      [IT + "test_reply.py::test_publish_broadcast_and_exclude_self"]),
    # reply commands: a join not reported to the router
    M("ap-reply-join-not-reported", "src/reply.c",
      "            worker_report(w, RMSG_CH_ADD, c->sid, SID_LEN, name, len);",
      "            (void)0;",
      [IT + "test_reply.py::test_join_by_header_then_a_channel_publish_reaches_it"]),
]


def sh(cmd, cwd, timeout, log):
    """Runs cmd (list) with output appended to log; returns (rc, seconds, timed_out)."""
    t0 = time.monotonic()
    # cmocka: abort at the first failed check, so a later test the mutant makes
    # loop forever cannot turn a plain failure into a time-out
    env = dict(os.environ, CMOCKA_TEST_ABORT="1")
    with open(log, "ab") as out:
        out.write(("\n$ %s  (in %s)\n" % (" ".join(shlex.quote(c) for c in cmd), cwd)).encode())
        out.flush()
        p = subprocess.Popen(cmd, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        try:
            rc = p.wait(timeout=max(1, timeout))
            return rc, time.monotonic() - t0, False
        except subprocess.TimeoutExpired:
            # our own child's process group: the test run and what it started
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()
            return -9, time.monotonic() - t0, True


def copy_repo(dest):
    r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       cwd=str(REPO), capture_output=True, check=True)
    for rel in r.stdout.decode().split("\0"):
        if not rel:
            continue
        src = REPO / rel
        if not src.is_file():  # deleted but not yet committed
            continue
        d = dest / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(str(src), str(d))


def check_snippets(mutants, root):
    """Every snippet must occur exactly once; returns a list of problems."""
    bad = []
    for m in mutants:
        text = (root / m["file"]).read_text()
        n = text.count(m["old"])
        if n != 1:
            bad.append("%s: snippet found %d times in %s (want exactly 1):\n%s"
                       % (m["name"], n, m["file"], m["old"]))
    return bad


def test_cmds(m, root):
    cmds = []
    units = [t[5:] for t in m["tests"] if t.startswith("unit:")]
    pys = [t[3:] for t in m["tests"] if t.startswith("py:")]
    for u in units:
        cmds.append((["make", "-s", "-j2", "build/tests/" + u], root, False))
        cmds.append((["build/tests/" + u], root, True))
    if pys:
        args = []
        for p in pys:
            args += shlex.split(p)
        cmds.append(([PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"] + args,
                     root / "tests" / "integration", True))
    return cmds


def run_one(m, root, log, mutate=True):
    """-> (verdict, seconds, detail)."""
    f = root / m["file"]
    original = f.read_text()
    t0 = time.monotonic()
    try:
        if mutate:
            f.write_text(original.replace(m["old"], m["new"], 1))
        rc, _, _ = sh(["make", "-s", "-j2", "fooking"], root, 300, log)
        if rc != 0:
            return "BUILD-ERROR", time.monotonic() - t0, "the mutant does not build (see log)"
        for cmd, cwd, is_test in test_cmds(m, root):
            left = m["limit"] - (time.monotonic() - t0)
            rc, _, timed_out = sh(cmd, cwd, left if is_test else 300, log)
            if not is_test and rc != 0:
                return "BUILD-ERROR", time.monotonic() - t0, "building %s failed" % cmd[-1]
            if timed_out:
                return "caught", time.monotonic() - t0, "time limit (%ds)" % m["limit"]
            if cmd[0] == PYTHON and rc in (2, 3, 4, 5):
                # interrupted, internal error, usage error (a node id that does
                # not exist), nothing collected: not a verdict on the mutant
                return "TEST-ERROR", time.monotonic() - t0, "pytest exit %d (see log)" % rc
            if rc != 0:
                return "caught", time.monotonic() - t0, "%s failed" % (
                    "a test" if cmd[0] == PYTHON else cmd[0])
        return "missed", time.monotonic() - t0, ""
    finally:
        f.write_text(original)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", action="append", default=[], help="only mutants whose name has this")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--baseline", action="store_true",
                    help="run each mutant's tests on the unmutated code (all must pass)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    a = ap.parse_args()
    chosen = [m for m in MUTANTS if not a.k or any(k in m["name"] for k in a.k)]
    if a.list:
        for m in chosen:
            print("%-32s %-14s %s" % (m["name"], m["file"], " ".join(m["tests"])))
        return 0
    if not chosen:
        print("no mutant matches", a.k)
        return 2
    bad = check_snippets(chosen, REPO)
    if bad:
        print("mutants table out of date:\n" + "\n\n".join(bad), file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="fooking-mutants-"))
    log = root / "mutants.log"
    print("scratch copy: %s (log: %s)" % (root, log), flush=True)
    try:
        copy_repo(root)
        # stale objects must not leak in: a clean build of the unmutated copy first
        rc, secs, _ = sh(["make", "-s", "-j2", "fooking"], root, 600, log)
        if rc != 0:
            print("the unmutated copy does not build; see", log)
            return 2
        rows = []
        width = max(len(m["name"]) for m in chosen)
        print("%-*s | %-11s | %7s | %s" % (width, "mutant", "result", "seconds", "detail"))
        print("-" * (width + 40))
        for m in chosen:
            verdict, secs, detail = run_one(m, root, log, mutate=not a.baseline)
            if a.baseline:
                verdict = {"missed": "passes", "caught": "FAILS"}.get(verdict, verdict)
            rows.append((m["name"], verdict, secs))
            print("%-*s | %-11s | %7.1f | %s" % (width, m["name"], verdict, secs, detail),
                  flush=True)
        total = sum(r[2] for r in rows)
        good = "passes" if a.baseline else "caught"
        failed = [r for r in rows if r[1] != good]
        print("-" * (width + 40))
        print("%d mutants, %d %s, %d not, %.0f s" % (len(rows), len(rows) - len(failed), good,
                                                      len(failed), total))
        return 1 if failed else 0
    finally:
        if a.keep:
            print("kept", root)
        else:
            shutil.rmtree(str(root), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
