/*
 * flagserver_guard: a bound on how long a client may take to send a
 * request head, so that slow clients cannot hold every connection.
 *
 * DESIGN. libmicrohttpd's connection timeout is an idle timeout: a client
 * sending one header byte every few seconds keeps its connection forever,
 * and a few thousand such clients fill the connection cap, after which
 * MHD closes every new connection at once (a slow-header attack). So each
 * site watches its connections: a connection is "waiting" from the moment
 * it opens, and again from the end of each answer, until the head of its
 * next request is complete (MHD's first call of the handler). The main
 * thread sweeps the watches a few times a second and shuts down the socket
 * of every connection that waited longer than HEADER_TIMEOUT, or
 * PRESSED_HEADER_TIMEOUT once three quarters of the cap are in use; MHD
 * then sees the end of the stream and closes the connection itself.
 * Connections parked for their delay are not waiting, so never cut.
 *
 * Threads and locks: a site's watches are linked, counted and marked by
 * its daemon's polling thread (in MHD's callbacks) and swept by the main
 * thread, both under the guard's lock. MHD calls the CLOSED notification
 * before it closes the socket, so a descriptor read under the lock is
 * never one the kernel has handed to another connection.
 */
#include "flagserver.h"

#include <stdlib.h>
#include <sys/socket.h>

int fs_guard_init(struct guard *g, unsigned cap) {
  g->head.prev = g->head.next = &g->head;
  g->count = 0;
  g->cap = cap;
  return pthread_mutex_init(&g->lock, NULL);
}

void fs_guard_destroy(struct guard *g) {
  pthread_mutex_destroy(&g->lock);
}

/* MHD connection callback: links a new connection's watch, unlinks and
 * frees a closing one's. Without memory a connection goes unwatched. */
void fs_on_connection(void *cls, struct MHD_Connection *conn,
                      void **socket_context,
                      enum MHD_ConnectionNotificationCode toe) {
  struct guard *g = &((struct site *)cls)->guard;
  struct watch *w = *socket_context;
  const union MHD_ConnectionInfo *info;

  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info || !(w = calloc(1, sizeof *w)))
      return;
    w->fd = info->connect_fd;
    w->waiting = 1;
    w->since = fs_now_ns();
    pthread_mutex_lock(&g->lock); /* the list and count */
    w->next = g->head.next;
    w->prev = &g->head;
    w->next->prev = w->prev->next = w;
    g->count++;
    pthread_mutex_unlock(&g->lock);
    *socket_context = w;
  } else if (w) {
    pthread_mutex_lock(&g->lock); /* the list and count */
    w->prev->next = w->next;
    w->next->prev = w->prev;
    g->count--;
    pthread_mutex_unlock(&g->lock);
    free(w);
    *socket_context = NULL;
  }
}

void fs_guard_mark(struct guard *g, struct MHD_Connection *conn, int waiting) {
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  struct watch *w = info ? info->socket_context : NULL;

  if (!w)
    return;
  pthread_mutex_lock(&g->lock); /* waiting and since */
  w->waiting = waiting;
  w->since = fs_now_ns();
  pthread_mutex_unlock(&g->lock);
}

void fs_guard_sweep(struct guard *g) {
  uint64_t now = fs_now_ns(), limit;

  pthread_mutex_lock(&g->lock); /* every watch stays linked while read */
  limit = (uint64_t)(4 * g->count >= 3 * g->cap ? PRESSED_HEADER_TIMEOUT
                                                : HEADER_TIMEOUT) *
          1000000000u;
  for (struct watch *w = g->head.next; w != &g->head; w = w->next)
    if (w->waiting && now - w->since > limit) {
      shutdown(w->fd, SHUT_RDWR);
      w->waiting = 0;
    }
  pthread_mutex_unlock(&g->lock);
}
