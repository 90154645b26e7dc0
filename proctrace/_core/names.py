"""Names every layer agrees on: span status codes, attribute keys, process-object attributes.

Defined once here; encoders, the collector, the viewer and the test receiver's
readers use these instead of repeating the literals.
"""

from __future__ import annotations

# OTLP status codes (the SDK's StatusCode values and the protobuf enum agree).
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
STATUS_NAMES = {STATUS_UNSET: "UNSET", STATUS_OK: "OK", STATUS_ERROR: "ERROR"}

# Span attributes.
PID = "process.pid"
PARENT_PID = "process.parent_pid"
EXIT_CODE = "process.exit.code"
PROCESS_NAME = "proctrace.process.name"
START_METHOD = "proctrace.start_method"
STARTER_PID = "proctrace.starter.pid"
FUNCTION = "code.function.name"
ARGS = "proctrace.args"
KWARGS_PREFIX = "proctrace.kwargs."
TERMINATED = "proctrace.terminated"
ABNORMAL_END = "proctrace.abnormal_end"
STOPPED_BY = "proctrace.stopped_by"  # the signal the whole process group was stopped with
EXEC = "proctrace.exec"  # the process replaced its program (os.exec*) while its span was open
RUNNING_AT_EXIT = "proctrace.running_at_exit"  # a pool worker still running at exit
DROPPED_LOG_EVENTS = "proctrace.dropped_log_events"
# What a process used, measured by the process itself at the end of its span (_child/usage).
CPU_USER, CPU_SYSTEM = "process.cpu.user_s", "process.cpu.system_s"
MEMORY_PEAK = "process.memory.peak_bytes"
SWITCHES_VOLUNTARY = "process.context_switches.voluntary"
SWITCHES_INVOLUNTARY = "process.context_switches.involuntary"
TASK_CPU = "proctrace.task.cpu_s"  # a call's (a pool task's) own CPU time, on its thread

# Attributes proctrace sets on multiprocessing's process objects.
CARRIER_ATTR = "_proctrace_carrier"  # the carrier, captured at start()
ENTERED_ATTR = "_proctrace_entered"  # set once the child's process span is open
POOL_PARENT_ATTR = "_proctrace_pool_parent"  # a pool worker's traceparent
# The carrier key of a fork child's start prepared by its starter (``_child.forkstart``),
# and the module that runs such a child: only processes that start fork children load it.
FORK_PREPARED = "fork"
FORKED_MODULE = "proctrace._child.forked"

SCOPE = "proctrace"  # the instrumentation scope of proctrace's own spans

# The run's private directory (made by the starter, removed at exit or by the agent) and
# the two files in it: the collector's socket and the log lines' lock.
RUN_PREFIX = "proctrace-"
RUN_SOCKET = "collector.sock"
RUN_LOCK = "stderr.lock"
