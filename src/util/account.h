/* The one memory account (Redis's zmalloc is the model): every byte strata
 * allocates for a model (weights, streaming slots, the expert cache, KV
 * caches, scratch buffers, prompt tokens, logits output) is counted here,
 * per tier (RAM, VRAM) and per category. The budget check happens here,
 * before the memory is touched: acct_take refuses what would exceed the
 * tier's budget, and acct_alloc takes first and faults the memory in after.
 * The store places weights in what the account has left (acct_room), the
 * watchdog and `--stats` read it. Thread-safe (one mutex). */
#ifndef STRATA_UTIL_ACCOUNT_H
#define STRATA_UTIL_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"

typedef enum acct_tier { ACCT_RAM = 0, ACCT_VRAM, ACCT_N_TIERS } acct_tier;

/* The public STRATA_MEM_* values are these, in this order. */
typedef enum acct_cat {
    ACCT_PROCESS = 0, /* code, stacks, the file's header, the tokenizer: an estimate, never allocated here */
    ACCT_WEIGHTS,     /* resident weight groups */
    ACCT_SLOTS,       /* the streaming ring's slots and the embedding row buffer */
    ACCT_EXPERTS,     /* the expert cache's slots (mixture of experts) */
    ACCT_KV,          /* the KV caches of open contexts */
    ACCT_KV_RESERVE,  /* KV room held for contexts not opened yet (not touched) */
    ACCT_SCRATCH,     /* activations and per-batch buffers */
    ACCT_PROMPT,      /* prompt tokens and the work of tokenizing them */
    ACCT_LOGITS,      /* logits handed to the caller, and the generation loops' logits rows */
    ACCT_SAMPLER,     /* samplers' candidates, token histories, end-of-generation lists */
    ACCT_TEXT,        /* request bodies, chat messages, generated and response text */
    ACCT_OTHER,       /* any other buffer */
    ACCT_N_CATS
} acct_cat;

typedef struct mem_account mem_account;

/* budget: bytes of RAM the account may hold (0: no limit); VRAM has none
 * until acct_set_budget. NULL when out of memory. */
mem_account *acct_new(uint64_t ram_budget);
void acct_free(mem_account *a);
void acct_set_budget(mem_account *a, acct_tier t, uint64_t bytes);
uint64_t acct_budget(const mem_account *a, acct_tier t); /* 0: no limit */

/* Asked, outside the account's lock, to free `bytes` of the tier when a
 * take does not fit (the store demotes resident weights to streaming);
 * returns the bytes it freed. Weight, slot and expert takes never ask (the
 * store maps those itself). */
typedef uint64_t (*acct_reclaim_fn)(void *ctx, uint64_t bytes);
void acct_set_reclaim(mem_account *a, acct_reclaim_fn fn, void *ctx); /* fn NULL: none */

/* Counts `bytes` more of category c, if they fit the tier's budget (after
 * asking the reclaimer once); else nothing changes and err says what was
 * asked for, the budget and what holds it (STRATA_E_NOMEM). */
strata_status acct_take(mem_account *a, acct_tier t, acct_cat c, uint64_t bytes, strata_error *err);
/* Counts `bytes` fewer of category c (at most what it holds). */
void acct_give(mem_account *a, acct_tier t, acct_cat c, uint64_t bytes);
/* Moves bytes from one category to another (a context taking its KV cache
 * from the reserve); false, nothing moved, when `from` holds fewer. */
bool acct_move(mem_account *a, acct_tier t, acct_cat from, acct_cat to, uint64_t bytes);

uint64_t acct_used(const mem_account *a, acct_tier t);
uint64_t acct_cat_used(const mem_account *a, acct_tier t, acct_cat c);
uint64_t acct_peak(const mem_account *a, acct_tier t);
/* Bytes the tier's budget has left; UINT64_MAX without a budget. */
uint64_t acct_room(const mem_account *a, acct_tier t);
/* Refusals so far (acct_take calls that did not fit). */
uint64_t acct_refusals(const mem_account *a);

/* A snapshot of one tier: per category (now and at its peak), the total,
 * budget and peak. */
typedef struct acct_snapshot {
    uint64_t used[ACCT_N_CATS];
    uint64_t cat_peak[ACCT_N_CATS]; /* the most each category held at once */
    uint64_t total, budget, peak;
} acct_snapshot;
void acct_snapshot_get(const mem_account *a, acct_tier t, acct_snapshot *out);

const char *acct_cat_name(acct_cat c);  /* "weights", "KV cache", ... */
const char *acct_tier_name(acct_tier t); /* "RAM", "VRAM" */

/* ---- RAM through the account (account_alloc.c) ----
 * A 64-byte-aligned heap buffer, taken from the account first (refused
 * before anything is allocated) and then faulted in (zeroed), so the
 * process's memory is what the account says from the first use on. NULL
 * with err set when refused or out of memory. (Weight memory is mapped by
 * the store, store/mem.c, through acct_take.) */
void *acct_alloc(mem_account *a, acct_cat c, uint64_t bytes, strata_error *err);
/* The same aligned to `align` (a power of two, at least sizeof(void *)). */
void *acct_alloc_aligned(mem_account *a, acct_cat c, uint64_t bytes, size_t align, strata_error *err);
void acct_release(mem_account *a, acct_cat c, void *p, uint64_t bytes);
/* A malloc-aligned buffer grown (or shrunk) from `old` bytes to `bytes`:
 * the growth is taken from the account before realloc touches anything,
 * and the new tail is faulted in (zeroed); a shrink gives the difference
 * back. NULL with err set when refused or out of memory: p is then
 * unchanged and still counted at `old`. p NULL (old 0): a new buffer.
 * Such a buffer is released with acct_release. */
void *acct_realloc(mem_account *a, acct_cat c, void *p, uint64_t old, uint64_t bytes, strata_error *err);
#endif
