-- The cluster profile's PostgreSQL (docker-compose.yml): POSTGRES_DB creates the PACS's index database, this one
-- FerretDB's (the crosswalk the nodes share). `make cluster` creates both with createdb (tools/devstack/cluster.ts).
CREATE DATABASE ferretdb;
