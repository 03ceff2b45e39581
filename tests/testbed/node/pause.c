/* The Pod sandbox's process (what registry.k8s.io/pause runs): it holds the Pod's namespaces
 * and reaps orphans until told to stop. Built statically by tests/testbed/images.py, since no
 * registry is reachable to pull the upstream image. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
