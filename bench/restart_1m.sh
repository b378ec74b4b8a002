#!/bin/bash
# Restart with 1,000,000 stored 1 KiB messages: time from exec to serving.
# Usage: bench/restart_1m.sh [BUILD_DIR]   (needs the sqlite3 shell and about 1.5 GB of disk)
set -e
BUILD=${1:-build}
D=${HERALD_1M_DIR:-/tmp/herald-1m}
rm -rf $D; mkdir -p $D
H=$BUILD/server/heraldd
ARGS="--store.dir $D/data --listen.tcp 127.0.0.1:0 --listen.api 127.0.0.1:0 --listen.ws 127.0.0.1:0 --ready-file $D/ready.json --server.log_level warn"
$H $ARGS > $D/log 2>&1 & PID=$!
while [ ! -s $D/ready.json ]; do sleep 0.05; done
kill $PID; wait $PID || true
# 1,000,000 messages over 1,000 channels, 1 KiB bodies, straight into the schema.
time sqlite3 $D/data/herald.db <<SQL
PRAGMA journal_mode=WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999999)
INSERT INTO messages(channel, offset, message_id, collapse_key, created_ms, retain_until_ms, expires_ms, dismiss, body)
SELECT 'fill:' || (i % 1000), i / 1000 + 1, 'f' || i, '', 0, 0, 0, 0, randomblob(1024) FROM n;
INSERT INTO channels(name, epoch, last_offset) SELECT 'fill:' || i, 'e' || i, 1000 FROM (WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i < 999) SELECT i FROM m);
COMMIT;
SQL
sqlite3 $D/data/herald.db "SELECT count(*) FROM messages"
ls -la $D/data
for run in 1 2 3; do
  rm -f $D/ready.json
  T0=$(date +%s%N)
  $H $ARGS >> $D/log 2>&1 & PID=$!
  while [ ! -s $D/ready.json ]; do sleep 0.005; done
  T1=$(date +%s%N)
  API=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' $D/ready.json)
  curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer herald-dev-api-key' -d '{"channel":"user:probe","payload":1}' http://$API/v1/publish
  T2=$(date +%s%N)
  echo " run $run: ready after $(( (T1-T0)/1000000 )) ms, first durable publish acked after $(( (T2-T0)/1000000 )) ms"
  kill -9 $PID; wait $PID 2>/dev/null || true
done
du -sh $D/data
rm -rf $D
