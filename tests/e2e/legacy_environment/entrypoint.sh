#!/bin/sh
# As the environment images do: no Earth Engine credentials and no SKIP_GEE_INIT is fatal.
set -e
case "$SKIP_GEE_INIT" in
  true|1|yes) exec python main.py ;;
esac
if [ -n "$GEE_OAUTH_ACCESS_TOKEN" ] && [ -n "$GEE_OAUTH_REFRESH_TOKEN" ]; then
  exec python main.py
fi
if [ -n "$EE_SERVICE_ACCOUNT_JSON" ]; then
  exec python main.py
fi
echo "ERROR: No GEE credentials provided"
exit 1
