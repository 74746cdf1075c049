/* shm.c - anonymous shared mapping created by the master before it forks. */
#include "shm.h"

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

struct shm_block *shm_create(void)
{
    void *p = mmap(NULL, sizeof(struct shm_block), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, sizeof(struct shm_block));
    return p;
}

void shm_destroy(struct shm_block *b)
{
    if (b)
        munmap(b, sizeof(*b));
}
