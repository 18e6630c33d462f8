package imaging

/*
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// IMGEDGE_MALLOC_ARENAS is the most malloc arenas glibc may make where
// MALLOC_ARENA_MAX does not say otherwise.
#define IMGEDGE_MALLOC_ARENAS 2

// imgedge_limit_malloc_arenas runs as the program loads, before any thread
// is made: glibc's default lets every thread that allocates have an arena
// of its own, up to eight per core, and libvips' freed pixels then stay
// spread over them.
__attribute__((constructor)) static void imgedge_limit_malloc_arenas(void) {
#ifdef M_ARENA_MAX
	if (getenv("MALLOC_ARENA_MAX") == NULL)
		mallopt(M_ARENA_MAX, IMGEDGE_MALLOC_ARENAS);
#endif
}

// imgedge_malloc_arenas counts glibc's arenas (the heaps malloc_info
// lists), or returns -1 where it cannot.
static int imgedge_malloc_arenas(void) {
#ifndef __GLIBC__
	return -1;
#else
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return -1;
	int failed = malloc_info(0, f);
	fclose(f);
	int n = 0;
	for (char *p = buf; !failed && (p = strstr(p, "<heap nr=")) != NULL; p++)
		n++;
	free(buf);
	return failed ? -1 : n;
#endif
}

// imgedge_malloc_trim gives the free memory of every arena back to the
// system (glibc only).
static void imgedge_malloc_trim(void) {
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}
*/
import "C"

// The process makes at most mallocArenaLimit malloc arenas unless the
// MALLOC_ARENA_MAX environment variable sets another limit. libvips
// allocates its pixels with malloc on whichever thread runs it, and glibc's
// default (an arena per allocating thread, up to eight per core) kept the
// freed memory of past jobs spread over many arenas: peak RSS under
// auto-quality searches at concurrency 4 grew past 1 GiB (1.01, then 1.17
// GiB over a second round) where two arenas held it to 0.67 and 0.82 GiB.
const mallocArenaLimit = C.IMGEDGE_MALLOC_ARENAS

// mallocArenas is how many arenas glibc has made so far (-1 unknown).
func mallocArenas() int { return int(C.imgedge_malloc_arenas()) }

// TrimMalloc gives the memory libvips freed, which glibc keeps in its
// arenas for later allocations, back to the operating system (a no-op
// where the C library is not glibc). It walks every arena under its lock:
// call it when the process is idle, not per job.
func TrimMalloc() { C.imgedge_malloc_trim() }
