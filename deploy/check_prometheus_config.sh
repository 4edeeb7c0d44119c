#!/bin/sh
# Usage: check_prometheus_config.sh PROMETHEUS_YML
exec promtool check config "$1"
