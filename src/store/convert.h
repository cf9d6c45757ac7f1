/* Internal to the store module: conversion of a record written by an older schema into
 * the current one, run by migrate.c inside the migration's transaction. */
#ifndef STORE_CONVERT_H
#define STORE_CONVERT_H

struct store;

/* After migration 4's SQL, before migration 5 drops the old columns: turns the version-3
 * record (tokens and per-project counts in every batch row) into count deltas per
 * checkpoint, token pages listed by the last checkpoint, and the hash chain; sets
 * tally_compaction.through to the last checkpoint and checks tallies against the deltas.
 * A no-op on a database without checkpoints. Runs in the caller's transaction and does
 * not end it. Returns 0, or -1 with store_last_error() saying why (then the caller rolls
 * back: an inconsistent old record is never half-converted). */
int store_convert_v4(struct store *s) __attribute__((warn_unused_result));

#endif
