/* Counts every heap allocation made by the process while counting is on, whoever makes it
 * (C or C++, the extension, numpy, libstdc++ inside operator new): preloaded (LD_PRELOAD) into
 * a python subprocess by tests/test_native_allocations.py, which turns counting on around the
 * calls that must allocate nothing. tracemalloc sees only Python's allocators; this sees malloc.
 *
 * Each allocation function of glibc is replaced and forwards to glibc's own __libc_* entry
 * point (which calls no replaced function), so nothing recurses and nothing is missed.
 * Linux/glibc only. Build: cc -shared -fPIC -O2 -o count_allocations.so count_allocations.c */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* pointer, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);
extern void* __libc_valloc(size_t size);
extern void* __libc_pvalloc(size_t size);
extern void __libc_free(void* pointer);

static atomic_int counting;
static atomic_long allocations;

static void note(void) {
  if (atomic_load_explicit(&counting, memory_order_relaxed))
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
}

void* malloc(size_t size) {
  note();
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  note();
  return __libc_calloc(count, size);
}
void* realloc(void* pointer, size_t size) {
  note();
  return __libc_realloc(pointer, size);
}
void* reallocarray(void* pointer, size_t count, size_t size) {
  note();
  if (size != 0 && count > (size_t)-1 / size) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_realloc(pointer, count * size);
}
void* aligned_alloc(size_t alignment, size_t size) {
  note();
  return __libc_memalign(alignment, size);
}
void* memalign(size_t alignment, size_t size) {
  note();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** pointer, size_t alignment, size_t size) {
  note();
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* result = __libc_memalign(alignment, size);
  if (result == NULL) return ENOMEM;
  *pointer = result;
  return 0;
}
void* valloc(size_t size) {
  note();
  return __libc_valloc(size);
}
void* pvalloc(size_t size) {
  note();
  return __libc_pvalloc(size);
}
void free(void* pointer) { __libc_free(pointer); }

void count_allocations_start(void) {
  atomic_store(&allocations, 0);
  atomic_store(&counting, 1);
}

long count_allocations_stop(void) {
  atomic_store(&counting, 0);
  return atomic_load(&allocations);
}
