/*
 * gw_limits — per-address abuse limits: a request rate (token bucket) and
 * a temporary ban after repeated bad tokens.  A fixed table: memory does
 * not grow with the number of addresses; the least recently seen address
 * makes room.  Thread-safe.
 */
#ifndef IMGVAULT_GW_LIMITS_H
#define IMGVAULT_GW_LIMITS_H

#include "cidr.h"

struct gw_limits;

enum gw_verdict { GW_PASS, GW_RATE, GW_BANNED };

/* @rate requests per second with bursts of @burst; a ban of @ban_secs
 * after @ban_after bad tokens within a minute. */
int gw_limits_new(double rate, double burst, unsigned ban_after, unsigned ban_secs,
		  struct gw_limits **out);
void gw_limits_free(struct gw_limits *l);
/* Takes one request of @addr at @now (seconds). */
enum gw_verdict gw_limits_take(struct gw_limits *l, const struct cidr *addr, double now);
/* A bad token from @addr. */
void gw_limits_bad_token(struct gw_limits *l, const struct cidr *addr, double now);

#endif
