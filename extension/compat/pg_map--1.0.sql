-- pg_map: a compatibility name of the original pg_lake. It owns no objects: they are
-- pg_lake's, which CREATE EXTENSION pg_map creates first when it is missing (pg_lake's
-- utility hook), so scripts and dumps of the original work in any order.
\echo Use "CREATE EXTENSION pg_map" to load this file. \quit
