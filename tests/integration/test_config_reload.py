"""SIGHUP re-reads the config file: new limits apply to new connections; a bad file changes nothing."""

import pytest

import mqtt_raw
from helpers import unique

pytestmark = pytest.mark.fulmar_only  # Fulmar's config file and reload

CONFIG = """
[[listeners]]
bind = "127.0.0.1:{port}"
[limits]
max_subscriptions_per_client = %d
"""


def granted_of_two_filters(broker, raw_client) -> list[int]:
    c = raw_client(broker)
    c.mqtt_connect(unique("reload"))
    suback = c.mqtt_subscribe(1, [(f"{unique('r')}/a", 0), (f"{unique('r')}/b", 0)])
    c.close()
    return suback.granted


def config_file(broker):
    args = broker.proc.args
    return args[args.index("--config") + 1]


def test_sighup_applies_new_limits_to_new_connections(start_fulmar, raw_client):
    broker = start_fulmar(config_toml=CONFIG % 1)
    assert granted_of_two_filters(broker, raw_client) == [0, 0x80]
    path = config_file(broker)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("max_subscriptions_per_client = 1", "max_subscriptions_per_client = 5"))
    broker.wait_log("reloaded", after=broker.sighup())
    assert granted_of_two_filters(broker, raw_client) == [0, 0]


def test_sighup_with_a_bad_config_keeps_the_old_one_and_names_the_key(start_fulmar, raw_client):
    broker = start_fulmar(config_toml=CONFIG % 1)
    path = config_file(broker)
    with open(path, "a") as f:
        f.write("bogus_key = 3\n")
    # The TOML error spans lines: the message names the file, the line and the unknown key.
    broker.wait_log(r"reload refused[\s\S]*line 6[\s\S]*unknown field `bogus_key`", after=broker.sighup())
    assert granted_of_two_filters(broker, raw_client) == [0, 0x80]
    assert broker.proc.poll() is None, "a bad config on SIGHUP must not stop the broker"
