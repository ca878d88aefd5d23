// SPDX-License-Identifier: GPL-2.0
/*
 * p2plab-agent: the guest side of the orchestrator's control channel.
 *
 * It speaks JSON Lines over the virtio-serial port "org.p2plab.agent.0"
 * (protocol: docs/guest-agent.md): exec, kill, ping, poweroff.  One thread,
 * one poll loop: the port, a self-pipe for SIGCHLD and the output pipes of
 * every running command, so commands run concurrently (each exec answers
 * when its command ends) and a ping is answered while they run.  Static,
 * libc only, so it runs from the initramfs before any userspace exists.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.p2plab.agent.0"
#define AGENT_VERSION 2
#define MAX_LINE (1 << 20)
#define MAX_ARGS 256
#define OUT_CAP (1 << 20)
#define MAX_JOBS 32

/* ---------------------------------------------------------------- output */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort(); /* out of memory in the guest: nothing sane left */
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of a valid UTF-8 sequence at s, or 0: the host decodes strictly. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t want, i;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0 && s[0] >= 0xc2)
		want = 2;
	else if ((s[0] & 0xf0) == 0xe0)
		want = 3;
	else if ((s[0] & 0xf8) == 0xf0 && s[0] <= 0xf4)
		want = 4;
	else
		return 0;
	if (want > n)
		return 0;
	for (i = 1; i < want; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return want;
}

static void buf_json_str(struct buf *b, const char *s, size_t n)
{
	size_t i = 0;

	buf_put(b, "\"", 1);
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t l;

		if (c == '"' || c == '\\') {
			buf_put(b, "\\", 1);
			buf_put(b, (const char *)&c, 1);
			i++;
		} else if (c == '\n') {
			buf_put(b, "\\n", 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
			i++;
		} else if ((l = utf8_len((const unsigned char *)s + i, n - i))) {
			buf_put(b, s + i, l);
			i += l;
		} else {
			buf_put(b, "\\ufffd", 6);
			i++;
		}
	}
	buf_put(b, "\"", 1);
}

static int port_fd = -1;
static int connected; /* a host is on the port (it did not poll POLLHUP) */

static void send_line(struct buf *b)
{
	size_t off = 0;

	buf_put(b, "\n", 1);
	while (off < b->len) {
		ssize_t w = write(port_fd, b->p + off, b->len - off);

		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fprintf(stderr, "p2plab-agent: write: %s\n", strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static double uptime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reply_head(struct buf *b, const char *id, const char *event)
{
	buf_printf(b, "{\"id\":%s,\"event\":\"%s\"", id, event);
}

static void reply_error(const char *id, const char *msg)
{
	struct buf b = { 0 };

	reply_head(&b, id, "error");
	buf_put(&b, ",\"message\":", 11);
	buf_json_str(&b, msg, strlen(msg));
	buf_put(&b, "}", 1);
	send_line(&b);
}

static void send_ready(void)
{
	struct buf b = { 0 };
	struct utsname u;

	uname(&u);
	buf_printf(&b, "{\"event\":\"ready\",\"agent\":\"p2plab-agent\",\"version\":%d,"
		       "\"uptime\":%.3f,\"kernel\":", AGENT_VERSION, uptime());
	buf_json_str(&b, u.release, strlen(u.release));
	buf_put(&b, "}", 1);
	send_line(&b);
}

/* ------------------------------------------------------- request parsing */

/*
 * A strict parser for the one shape requests have: a flat object whose
 * values are strings, numbers, literals or arrays of strings.  Anything
 * else is skipped structurally, so a newer host does not confuse us.
 */
struct req {
	char id[32];
	char op[32];
	char *argv[MAX_ARGS + 1];
	int argc;
	double timeout;
	int report_start; /* exec: send "started" once the program runs */
	char job[32];     /* kill: the id of the exec request to kill */
	int signal;       /* kill: the signal (default SIGKILL) */
};

struct parser {
	const char *s;
	const char *err;
};

static void ws(struct parser *p)
{
	while (*p->s == ' ' || *p->s == '\t' || *p->s == '\r' || *p->s == '\n')
		p->s++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static void put_utf8(struct buf *b, unsigned int cp)
{
	char o[4];

	if (cp < 0x80) {
		o[0] = (char)cp;
		buf_put(b, o, 1);
	} else if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		buf_put(b, o, 2);
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		buf_put(b, o, 3);
	} else {
		o[0] = (char)(0xf0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		buf_put(b, o, 4);
	}
}

/* Returns a malloc'd string, or NULL with p->err set. */
static char *parse_string(struct parser *p)
{
	struct buf b = { 0 };

	if (*p->s != '"') {
		p->err = "expected a string";
		return NULL;
	}
	p->s++;
	buf_put(&b, "", 0);
	while (*p->s && *p->s != '"') {
		if (*p->s != '\\') {
			buf_put(&b, p->s++, 1);
			continue;
		}
		p->s++;
		switch (*p->s) {
		case '"': case '\\': case '/':
			buf_put(&b, p->s, 1); break;
		case 'n': buf_put(&b, "\n", 1); break;
		case 't': buf_put(&b, "\t", 1); break;
		case 'r': buf_put(&b, "\r", 1); break;
		case 'b': buf_put(&b, "\b", 1); break;
		case 'f': buf_put(&b, "\f", 1); break;
		case 'u': {
			unsigned int cp = 0;
			int i, h;

			for (i = 1; i <= 4; i++) {
				h = hexval(p->s[i]);
				if (h < 0) {
					p->err = "bad \\u escape";
					free(b.p);
					return NULL;
				}
				cp = cp * 16 + (unsigned int)h;
			}
			p->s += 4;
			put_utf8(&b, cp ? cp : 0xfffd); /* no NUL inside C strings */
			break;
		}
		default:
			p->err = "bad escape";
			free(b.p);
			return NULL;
		}
		p->s++;
	}
	if (*p->s != '"') {
		p->err = "unterminated string";
		free(b.p);
		return NULL;
	}
	p->s++;
	return b.p;
}

static int skip_value(struct parser *p, int depth);

static int skip_container(struct parser *p, char close, int depth)
{
	p->s++;
	ws(p);
	if (*p->s == close) {
		p->s++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			char *k = parse_string(p);

			if (!k)
				return -1;
			free(k);
			ws(p);
			if (*p->s++ != ':') {
				p->err = "expected ':'";
				return -1;
			}
			ws(p);
		}
		if (skip_value(p, depth + 1))
			return -1;
		ws(p);
		if (*p->s == ',') {
			p->s++;
			ws(p);
			continue;
		}
		if (*p->s == close) {
			p->s++;
			return 0;
		}
		p->err = "expected ',' or a closing bracket";
		return -1;
	}
}

static int skip_value(struct parser *p, int depth)
{
	if (depth > 32) {
		p->err = "nested too deep";
		return -1;
	}
	ws(p);
	if (*p->s == '"') {
		char *s = parse_string(p);

		free(s);
		return s ? 0 : -1;
	}
	if (*p->s == '{')
		return skip_container(p, '}', depth);
	if (*p->s == '[')
		return skip_container(p, ']', depth);
	if (!strncmp(p->s, "true", 4) || !strncmp(p->s, "null", 4)) {
		p->s += 4;
		return 0;
	}
	if (!strncmp(p->s, "false", 5)) {
		p->s += 5;
		return 0;
	}
	if (*p->s == '-' || isdigit((unsigned char)*p->s)) {
		char *end;

		strtod(p->s, &end);
		p->s = end;
		return 0;
	}
	p->err = "unexpected value";
	return -1;
}

static void req_free(struct req *r)
{
	int i;

	for (i = 0; i < r->argc; i++)
		free(r->argv[i]);
	r->argc = 0;
}

static int parse_argv(struct parser *p, struct req *r)
{
	if (*p->s != '[') {
		p->err = "argv must be an array of strings";
		return -1;
	}
	p->s++;
	ws(p);
	if (*p->s == ']') {
		p->s++;
		return 0;
	}
	for (;;) {
		char *a;

		ws(p);
		if (r->argc >= MAX_ARGS) {
			p->err = "too many arguments";
			return -1;
		}
		a = parse_string(p);
		if (!a)
			return -1;
		r->argv[r->argc++] = a;
		ws(p);
		if (*p->s == ',') {
			p->s++;
			continue;
		}
		if (*p->s == ']') {
			p->s++;
			return 0;
		}
		p->err = "expected ',' or ']' in argv";
		return -1;
	}
}

static int parse_request(const char *line, struct req *r)
{
	struct parser p = { .s = line };

	memset(r, 0, sizeof(*r));
	strcpy(r->id, "null");
	ws(&p);
	if (*p.s != '{') {
		p.err = "a request must be a JSON object";
		goto bad;
	}
	p.s++;
	ws(&p);
	while (*p.s && *p.s != '}') {
		char *key = parse_string(&p);

		if (!key)
			goto bad;
		ws(&p);
		if (*p.s++ != ':') {
			free(key);
			p.err = "expected ':'";
			goto bad;
		}
		ws(&p);
		if (!strcmp(key, "id") && (*p.s == '-' || isdigit((unsigned char)*p.s))) {
			char *end;
			long long v = strtoll(p.s, &end, 10);

			snprintf(r->id, sizeof(r->id), "%lld", v);
			p.s = end;
		} else if (!strcmp(key, "op") && *p.s == '"') {
			char *op = parse_string(&p);

			if (op) {
				snprintf(r->op, sizeof(r->op), "%s", op);
				free(op);
			}
		} else if (!strcmp(key, "argv")) {
			parse_argv(&p, r);
		} else if (!strcmp(key, "timeout") && isdigit((unsigned char)*p.s)) {
			char *end;

			r->timeout = strtod(p.s, &end);
			p.s = end;
		} else if (!strcmp(key, "report_start") && !strncmp(p.s, "true", 4)) {
			r->report_start = 1;
			p.s += 4;
		} else if (!strcmp(key, "job") && (*p.s == '-' || isdigit((unsigned char)*p.s))) {
			char *end;
			long long v = strtoll(p.s, &end, 10);

			snprintf(r->job, sizeof(r->job), "%lld", v);
			p.s = end;
		} else if (!strcmp(key, "signal") && isdigit((unsigned char)*p.s)) {
			char *end;

			r->signal = (int)strtol(p.s, &end, 10);
			p.s = end;
		} else {
			skip_value(&p, 0);
		}
		free(key);
		if (p.err)
			goto bad;
		ws(&p);
		if (*p.s == ',') {
			p.s++;
			ws(&p);
		} else if (*p.s != '}') {
			p.err = "expected ',' or '}'";
			goto bad;
		}
	}
	if (*p.s != '}') {
		p.err = "unterminated object";
		goto bad;
	}
	return 0;
bad:
	reply_error(r->id, p.err ? p.err : "malformed request");
	req_free(r);
	return -1;
}

/* ------------------------------------------------------------ operations */

/*
 * A running command.  Its exec request is answered when the command is done:
 * both output pipes at EOF and the process reaped (as before, a command that
 * leaves a child holding its output open is not done until that child is).
 */
struct job {
	int used;
	char id[32]; /* the exec request's id, as sent back */
	pid_t pid;   /* also its process group: it runs in its own session */
	int fd[2];   /* stdout, stderr; -1 once at EOF */
	struct buf out[2];
	int truncated, timed_out, reaped, status;
	double t0, deadline; /* deadline 0: none */
};

static struct job jobs[MAX_JOBS];
static int chld_pipe[2] = { -1, -1 };

static void on_sigchld(int sig)
{
	int e = errno;
	ssize_t w = write(chld_pipe[1], "c", 1); /* non-blocking: a full pipe is awake anyway */

	(void)sig;
	(void)w;
	errno = e;
}

static void capture(struct job *j, int s)
{
	char tmp[65536];
	struct buf *b = &j->out[s];
	ssize_t n = read(j->fd[s], tmp, sizeof(tmp));

	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		close(j->fd[s]);
		j->fd[s] = -1;
		return;
	}
	if (b->len + (size_t)n > OUT_CAP) {
		j->truncated = 1;
		n = (ssize_t)(OUT_CAP - b->len);
	}
	if (n > 0)
		buf_put(b, tmp, (size_t)n);
}

static void kill_job(struct job *j, int sig)
{
	kill(-j->pid, sig);
	kill(j->pid, sig);
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void do_exec(struct req *r)
{
	int p[6] = { -1, -1, -1, -1, -1, -1 }; /* stdout, stderr, exec status: read, write */
	struct job *j = NULL;
	struct buf b = { 0 };
	int e = 0;
	ssize_t n;
	pid_t pid;

	if (r->argc == 0) {
		reply_error(r->id, "exec needs a non-empty argv");
		return;
	}
	for (int i = 0; i < MAX_JOBS && !j; i++)
		if (!jobs[i].used)
			j = &jobs[i];
	if (!j) {
		reply_error(r->id, "too many commands running");
		return;
	}
	r->argv[r->argc] = NULL;
	if (pipe2(p, O_CLOEXEC) || pipe2(p + 2, O_CLOEXEC) || pipe2(p + 4, O_CLOEXEC)) {
		reply_error(r->id, strerror(errno));
		close_fds(p, 6);
		return;
	}
	pid = fork();
	if (pid < 0) {
		reply_error(r->id, strerror(errno));
		close_fds(p, 6);
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		setsid();
		dup2(null, 0);
		dup2(p[1], 1);
		dup2(p[3], 2);
		if (chdir("/"))
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		execvp(r->argv[0], r->argv);
		e = errno;
		fprintf(stderr, "p2plab-agent: exec %s: %s\n", r->argv[0], strerror(e));
		n = write(p[5], &e, sizeof(e));
		_exit(127);
	}
	close(p[1]);
	close(p[3]);
	close(p[5]);
	/* The exec status pipe is closed on exec: EOF says the program runs. */
	while ((n = read(p[4], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(p[4]);
	memset(j, 0, sizeof(*j));
	j->used = 1;
	snprintf(j->id, sizeof(j->id), "%s", r->id);
	j->pid = pid;
	j->fd[0] = p[0];
	j->fd[1] = p[2];
	buf_put(&j->out[0], "", 0);
	buf_put(&j->out[1], "", 0);
	j->t0 = now();
	j->deadline = r->timeout > 0 ? j->t0 + r->timeout : 0;
	if (r->report_start && n == 0) {
		reply_head(&b, r->id, "started");
		buf_printf(&b, ",\"pid\":%d}", (int)pid);
		send_line(&b);
	}
}

static void do_kill(struct req *r)
{
	struct buf b = { 0 };
	int sig = r->signal ? r->signal : SIGKILL;

	if (sig < 1 || sig >= NSIG) {
		reply_error(r->id, "bad signal");
		return;
	}
	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &jobs[i];

		if (j->used && r->job[0] && !strcmp(j->id, r->job)) {
			kill_job(j, sig);
			reply_head(&b, r->id, "ok");
			buf_put(&b, "}", 1);
			send_line(&b);
			return;
		}
	}
	reply_error(r->id, "no running command with that id");
}

/* Collect exit statuses: of our commands, and of orphans we may have inherited. */
static void reap(void)
{
	char tmp[64];
	int status;
	pid_t pid;

	while (read(chld_pipe[0], tmp, sizeof(tmp)) > 0)
		;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_JOBS; i++) {
			if (jobs[i].used && !jobs[i].reaped && jobs[i].pid == pid) {
				jobs[i].reaped = 1;
				jobs[i].status = status;
			}
		}
	}
}

/* Answer the exec requests of the commands that are done. */
static void finish_jobs(void)
{
	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &jobs[i];
		struct buf rep = { 0 };
		int st = j->status;

		if (!j->used || !j->reaped || j->fd[0] >= 0 || j->fd[1] >= 0)
			continue;
		reply_head(&rep, j->id, "exit");
		buf_printf(&rep, ",\"status\":%d,\"signal\":%d,\"timed_out\":%s,\"duration\":%.6f,"
				 "\"truncated\":%s,\"stdout\":",
			   WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
			   WIFSIGNALED(st) ? WTERMSIG(st) : 0, j->timed_out ? "true" : "false",
			   now() - j->t0, j->truncated ? "true" : "false");
		buf_json_str(&rep, j->out[0].p, j->out[0].len);
		buf_put(&rep, ",\"stderr\":", 10);
		buf_json_str(&rep, j->out[1].p, j->out[1].len);
		buf_put(&rep, "}", 1);
		free(j->out[0].p);
		free(j->out[1].p);
		memset(j, 0, sizeof(*j));
		/* Nobody to tell (a write would block until a host connects): drop it. */
		if (connected)
			send_line(&rep);
		else
			free(rep.p);
	}
}

/* Kill the commands past their timeout; returns ms until the next deadline (at most ms). */
static int expire_jobs(int ms)
{
	double t = now();

	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &jobs[i];

		if (!j->used || !j->deadline)
			continue;
		if (t >= j->deadline) {
			j->timed_out = 1;
			j->deadline = 0;
			kill_job(j, SIGKILL);
		} else if ((j->deadline - t) * 1000 < ms) {
			ms = (int)((j->deadline - t) * 1000) + 1;
		}
	}
	return ms;
}

static void handle(const char *line)
{
	struct req r;
	struct buf b = { 0 };

	if (parse_request(line, &r))
		return;
	if (!strcmp(r.op, "ping")) {
		reply_head(&b, r.id, "pong");
		buf_printf(&b, ",\"uptime\":%.3f,\"version\":%d}", uptime(), AGENT_VERSION);
		send_line(&b);
	} else if (!strcmp(r.op, "exec")) {
		do_exec(&r);
	} else if (!strcmp(r.op, "kill")) {
		do_kill(&r);
	} else if (!strcmp(r.op, "poweroff")) {
		reply_head(&b, r.id, "ok");
		buf_put(&b, "}", 1);
		send_line(&b);
		sync();
		reboot(RB_POWER_OFF);
		reply_error(r.id, strerror(errno));
	} else {
		reply_error(r.id, "unknown op");
	}
	req_free(&r);
}

/* ------------------------------------------------------------------ main */

static int open_port(void)
{
	for (int tries = 0; tries < 300; tries++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;

		while (d && (e = readdir(d))) {
			char path[300], name[64] = "";
			FILE *f;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
			f = fopen(path, "r");
			if (!f)
				continue;
			if (fgets(name, sizeof(name), f))
				name[strcspn(name, "\n")] = 0;
			fclose(f);
			if (!strcmp(name, PORT_NAME)) {
				snprintf(path, sizeof(path), "/dev/%s", e->d_name);
				closedir(d);
				return open(path, O_RDWR | O_CLOEXEC);
			}
		}
		if (d)
			closedir(d);
		usleep(10000);
	}
	errno = ENOENT;
	return -1;
}

int main(int argc, char **argv)
{
	static char line[MAX_LINE + 1];
	static struct pollfd pf[2 + 2 * MAX_JOBS];
	struct sigaction sa;
	size_t len = 0;
	int overflow = 0;
	double quiet_until = 0; /* after POLLHUP: leave the port out of poll until then */

	signal(SIGPIPE, SIG_IGN);
	if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK)) {
		fprintf(stderr, "p2plab-agent: pipe: %s\n", strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	/* "--fd N": speak on an inherited descriptor (tests run the agent on the host). */
	if (argc == 3 && !strcmp(argv[1], "--fd"))
		port_fd = atoi(argv[2]);
	else
		port_fd = open_port();
	if (port_fd < 0) {
		fprintf(stderr, "p2plab-agent: no virtio port %s: %s\n", PORT_NAME, strerror(errno));
		return 1;
	}
	for (;;) {
		int nfds = 2, slot[2 + 2 * MAX_JOBS], ms;
		ssize_t n;

		reap();
		finish_jobs();
		ms = expire_jobs(200);
		/* pf[0]: SIGCHLD; pf[1]: the port (a negative fd is left out); then outputs. */
		pf[0] = (struct pollfd){ chld_pipe[0], POLLIN, 0 };
		pf[1] = (struct pollfd){ port_fd, POLLIN, 0 };
		if (now() < quiet_until) {
			pf[1].fd = -1;
			if ((quiet_until - now()) * 1000 < ms)
				ms = (int)((quiet_until - now()) * 1000) + 1;
		}
		for (int i = 0; i < MAX_JOBS; i++) {
			for (int s = 0; s < 2; s++) {
				if (!jobs[i].used || jobs[i].fd[s] < 0)
					continue;
				slot[nfds] = 2 * i + s;
				pf[nfds++] = (struct pollfd){ jobs[i].fd[s], POLLIN, 0 };
			}
		}
		if (poll(pf, (nfds_t)nfds, ms) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int k = 2; k < nfds; k++)
			if (pf[k].revents & (POLLIN | POLLHUP | POLLERR))
				capture(&jobs[slot[k] / 2], slot[k] % 2);
		if (pf[1].fd < 0)
			continue;
		if (pf[1].revents & POLLHUP) {
			/* Host end not connected: a new connection gets a fresh ready. */
			connected = 0;
			len = 0;
			quiet_until = now() + 0.05;
			continue;
		}
		if (!connected) {
			connected = 1;
			send_ready();
		}
		if (!(pf[1].revents & POLLIN))
			continue;
		n = read(port_fd, line + len, MAX_LINE - len);
		if (n <= 0)
			continue;
		len += (size_t)n;
		for (;;) {
			char *nl = memchr(line, '\n', len);
			size_t used;

			if (!nl) {
				if (len == MAX_LINE) {
					len = 0;
					overflow = 1;
				}
				break;
			}
			*nl = 0;
			used = (size_t)(nl - line) + 1;
			if (overflow)
				reply_error("null", "request line too long");
			else if (nl != line)
				handle(line);
			overflow = 0;
			memmove(line, line + used, len - used);
			len -= used;
		}
	}
}
