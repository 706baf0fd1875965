/*
 * Arenas for the ingest thread's parsed frames. A frame's JSON tree lives exactly as long as
 * the chunk of events it arrived in, so its many small blocks come from the chunk's arena and
 * all go at once when the chunk is used again, instead of a malloc and a free each: under load
 * a third of the ingest thread's time went to glibc's allocator and to freeing those trees.
 *
 * jansson allocates through the hooks set by sc__arena_json_hooks(): in a thread that named an
 * arena with sc__arena_use() they take from it and freeing does nothing; everywhere else they
 * are malloc and free.
 */
#include "internal.h"

#include <stdlib.h>

#define S_BLOCK_MIN (64 * 1024)
/* A reset keeps this much, in one block, for the next fill; more is given back. */
#define S_KEEP_MAX (512 * 1024)
#define S_ALIGN alignof(max_align_t)

static _Thread_local sc__arena_t *s_current;

static void *s_json_malloc(size_t n)
{
    return s_current ? sc__arena_alloc(s_current, n) : malloc(n);
}

static void s_json_free(void *p)
{
    if (!s_current)
        free(p);
}

void sc__arena_json_hooks(void)
{
    json_set_alloc_funcs(s_json_malloc, s_json_free);
}

sc__arena_t *sc__arena_use(sc__arena_t *a)
{
    sc__arena_t *was = s_current;
    s_current = a;
    return was;
}

static sc__arena_block_t *s_block_new(size_t cap)
{
    sc__arena_block_t *b = malloc(sizeof *b + cap);
    if (b) {
        b->next = NULL;
        b->cap = cap;
    }
    return b;
}

void *sc__arena_alloc(sc__arena_t *a, size_t n)
{
    n = (n + S_ALIGN - 1) & ~(S_ALIGN - 1);
    if (n == 0)
        n = S_ALIGN;
    if ((size_t)(a->end - a->cur) < n) {
        sc__arena_block_t *b = s_block_new(n > S_BLOCK_MIN ? n : S_BLOCK_MIN);
        if (!b)
            return NULL;
        b->next = a->blocks;
        a->blocks = b;
        a->cur = b->mem;
        a->end = b->mem + b->cap;
    }
    void *p = a->cur;
    a->cur += n;
    return p;
}

sc__arena_mark_t sc__arena_mark(const sc__arena_t *a)
{
    return (sc__arena_mark_t){a->blocks, a->cur, a->end};
}

void sc__arena_rollback(sc__arena_t *a, sc__arena_mark_t m)
{
    while (a->blocks && a->blocks != m.block) {
        sc__arena_block_t *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    a->cur = m.cur;
    a->end = m.end;
}

void sc__arena_release(sc__arena_t *a)
{
    for (sc__arena_block_t *b = a->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    *a = (sc__arena_t){0};
}

/*
 * Empties the arena for its next fill. What the last fill needed is kept as one block (up to
 * S_KEEP_MAX), so an arena that filled several blocks once fills one from then on.
 */
void sc__arena_reset(sc__arena_t *a)
{
    sc__arena_block_t *b = a->blocks;
    if (b && !b->next) {
        a->cur = b->mem;
        return;
    }
    size_t total = 0;
    for (; b; b = b->next)
        total += b->cap;
    sc__arena_release(a);
    if (total == 0 || !(b = s_block_new(total < S_KEEP_MAX ? total : S_KEEP_MAX)))
        return;
    a->blocks = b;
    a->cur = b->mem;
    a->end = b->mem + b->cap;
}
