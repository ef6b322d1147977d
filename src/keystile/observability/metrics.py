"""``GET /metrics`` (SPEC O4): Keystile's own counters in the Prometheus text format, read at scrape time.

Nothing on the verification path calls into prometheus-client: the verifier, the spenders, the change buses and
the event recorder keep plain ``int`` counters, and :class:`KeystileCollector` turns them into metric families
only when Prometheus asks. A scrape builds a fresh registry (microseconds; state lives in those counters), so the
module holds no global and an app owns nothing but its services.

Each worker process answers for itself: with ``--workers N`` a scrape reaches one of them, and its numbers are
that worker's (``process_start_time_seconds`` tells them apart). prometheus-client's multiprocess mode is not
used; run one worker per port when per-process series matter.

See ``docs/operations.md`` for the list of metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from keystile.events import Events
    from keystile.service import Keystile

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# (metric name without _total, stats key, help) of each source's counters.
_CACHE = (
    ("keystile_cache_hits", "hits", "Verifications answered from the in-process key cache."),
    ("keystile_cache_misses", "misses", "Verifications that had to read the key from storage."),
    ("keystile_cache_negative_hits", "negative_hits", "Unknown keys answered from the cache of unknown keys."),
    ("keystile_cache_stale_served", "stale_served", "Cached keys served past their TTL while storage was down."),
)
_SPENDER = (
    (
        "keystile_ratelimit_backend_errors",
        "redis_errors",
        "Verifications whose rate limits or credits met a Redis error.",
    ),
    (
        "keystile_ratelimit_local_fallbacks",
        "local_decisions",
        "Verifications whose rate limits were decided in process memory because Redis failed (fail open).",
    ),
    (
        "keystile_ratelimit_closed_refusals",
        "closed_refusals",
        "Verifications refused because Redis failed and rate limits fail closed.",
    ),
    (
        "keystile_credits_database_fallbacks",
        "database_credits",
        "Credit spends made in the database instead of Redis because Redis failed.",
    ),
    (
        "keystile_credits_redis_loads",
        "counter_loads",
        "Credit balances loaded (or reloaded) into Redis from the database.",
    ),
    (
        "keystile_redis_data_losses",
        "data_losses",
        "Times Redis was found to have lost its data (credit counters reloaded from the database).",
    ),
    ("keystile_credits_writebacks", "writebacks", "Rounds of writing credits spent in Redis back to the database."),
    ("keystile_credits_written_back", "credits_written_back", "Credit spends written back to the database."),
    ("keystile_credits_writeback_errors", "writeback_errors", "Failed credit write-backs (retried later)."),
)
_REDIS = (
    ("keystile_redis_round_trips", "round_trips", "Batches of script calls written to Redis."),
    ("keystile_redis_calls", "calls", "Script calls (and batched parts of calls) sent to Redis."),
    ("keystile_redis_errors", "errors", "Failed Redis round trips and failed script calls."),
)
_BUS = (
    ("keystile_change_bus_published", "published", "Change notifications published to the other processes."),
    ("keystile_change_bus_received", "received", "Change notifications received from other processes."),
    ("keystile_change_bus_publish_errors", "publish_errors", "Change notifications that could not be published."),
    ("keystile_change_bus_reconnects", "reconnects", "Change subscriptions lost and made again."),
)

_EVENTS = (
    ("keystile_events_written", "written", "Verification events written to storage."),
    ("keystile_events_dropped", "dropped", "Verification events dropped because the event buffer was full."),
    ("keystile_events_write_errors", "write_errors", "Batch writes of events that failed (the batch is retried)."),
    (
        "keystile_events_rejected",
        "rejected",
        "Verification events discarded because storage refused their batch for a reason other than being down.",
    ),
    ("keystile_events_batches", "batches", "Batches of verification events written."),
)


def _counters(spec: Iterable[tuple[str, str, str]], stats: dict[str, int]) -> Iterator[Metric]:
    for name, key, text in spec:
        if key in stats:
            yield CounterMetricFamily(name, text, value=stats[key])


class KeystileCollector(Collector):
    """Reads the counters of the services ``services()`` returns (``None`` while they are not open)."""

    def __init__(self, services: Callable[[], Keystile | None], version: str) -> None:
        self._services = services
        self._version = version

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("keystile_build_info", "Keystile's version (always 1).", labels=["version"])
        info.add_metric([self._version], 1)
        yield info
        ks = self._services()
        ready = GaugeMetricFamily("keystile_services_open", "1 once the server has opened its storage, else 0.")
        ready.add_metric([], 1 if ks is not None else 0)
        yield ready
        if ks is None:
            return
        verifier = ks.ctx.verifier
        yield from _counters(_CACHE, verifier.stats)
        spender = verifier.spender
        spender_stats: dict[str, int] | None = getattr(spender, "stats", None)
        if spender_stats is not None:
            yield from _counters(_SPENDER, spender_stats)
            redis = getattr(spender, "redis", None)
            if redis is not None:
                yield from _counters(_REDIS, redis.stats)
        bus_stats: dict[str, int] | None = getattr(ks.ctx.bus, "stats", None)
        if bus_stats is not None:
            yield from _counters(_BUS, bus_stats)
            connected = GaugeMetricFamily(
                "keystile_change_bus_connected", "1 while this process is subscribed to change notifications."
            )
            connected.add_metric([], bus_stats.get("connected", 0))
            yield connected
        yield from _events(ks.events)


def _events(events: Events) -> Iterator[Metric]:
    """The event pipeline's metrics and the verifications it counted; only ``keystile_events_enabled`` (0) when
    events are off, since nothing is then recorded or counted."""
    enabled = GaugeMetricFamily("keystile_events_enabled", "1 when verification events are recorded, else 0.")
    enabled.add_metric([], 1 if events.enabled else 0)
    yield enabled
    if not events.enabled:
        return
    stats = events.stats
    yield GaugeMetricFamily(
        "keystile_events_buffered", "Verification events in memory waiting to be written.", value=stats.buffered
    )
    yield GaugeMetricFamily(
        "keystile_events_buffer_capacity",
        "Verification events the buffer holds; beyond it new events are dropped.",
        value=stats.capacity,
    )
    values = {name: getattr(stats, name) for _, name, _ in _EVENTS}
    yield from _counters(_EVENTS, values)
    yield GaugeMetricFamily(
        "keystile_events_last_flush_timestamp_seconds",
        "When a batch of verification events was last written (Unix time), 0 before the first.",
        value=stats.last_flush_ms / 1000,
    )
    retention = events.retention
    yield CounterMetricFamily(
        "keystile_events_retention_runs", "Retention passes over events and rollups.", value=retention.runs
    )
    yield CounterMetricFamily(
        "keystile_events_retention_errors", "Retention passes that failed (tried again an hour later).",
        value=retention.errors,
    )  # fmt: skip
    tally = events.count_verifications()
    verifications = CounterMetricFamily(
        "keystile_verifications",
        "Verifications recorded, by the key's API ('' when the key was not found) and outcome.",
        labels=["api_id", "outcome"],
    )
    for (api_id, outcome), count in sorted(tally.by_outcome.items()):
        verifications.add_metric([api_id, outcome], count)
    yield verifications
    yield HistogramMetricFamily(
        "keystile_verification_duration_seconds",
        "Time spent verifying a key in this process (recorded verifications; HTTP not included).",
        buckets=tally.cumulative_buckets(),
        sum_value=tally.latency_sum_ns / 1e9,
    )


def registry_for(services: Callable[[], Keystile | None]) -> CollectorRegistry:
    """A registry with Keystile's collector and prometheus-client's process, platform and GC collectors."""
    from keystile import __version__

    registry = CollectorRegistry(auto_describe=False)
    registry.register(KeystileCollector(services, __version__))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(services: Callable[[], Keystile | None]) -> bytes:
    """The metrics of the services ``services()`` returns, in the Prometheus text format 0.0.4."""
    return generate_latest(registry_for(services))
