/*
 * primes: checks whether numbers are prime on a procpool pool of worker
 * processes (or in the master alone, as a baseline), and prints each
 * number with the time its worker spent on it.
 *
 * This file reads the command line; primes.h lists the others. Every
 * input is validated before any work starts (exit 2, nothing printed).
 *
 * With --engine mpi every rank of the job runs this program on the same
 * command line, and ranks other than 0 never come back from
 * pp_pool_create(): they serve there, then exit. Nothing may stop them
 * before it (a rank that exits aborts the job), and only rank 0 has the
 * standard input (and perhaps the files). So the options are read first
 * with standard output and error silenced, the pool is started, and only
 * then does rank 0 say what was wrong with them, or read the files; on a
 * refusal it destroys the pool, which lets the other ranks exit cleanly.
 */
#include "primes.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RETRIES 100
#define MAX_SECONDS 1e9 /* --task-timeout: about 31 years */

enum {
  OPT_MODE = 256,
  OPT_SEQUENTIAL,
  OPT_ALGO,
  OPT_FORMAT,
  OPT_RANGE,
  OPT_RETRIES,
  OPT_TASK_TIMEOUT,
  OPT_COUNT,
  OPT_PRIMES_ONLY,
  OPT_ENGINE
};

static const struct option long_options[] = {
    {"file", required_argument, NULL, 'f'},
    {"workers", required_argument, NULL, 'w'},
    {"mode", required_argument, NULL, OPT_MODE},
    {"sequential", no_argument, NULL, OPT_SEQUENTIAL},
    {"algo", required_argument, NULL, OPT_ALGO},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"range", required_argument, NULL, OPT_RANGE},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"task-timeout", required_argument, NULL, OPT_TASK_TIMEOUT},
    {"count", no_argument, NULL, OPT_COUNT},
    {"primes-only", no_argument, NULL, OPT_PRIMES_ONLY},
    {"engine", required_argument, NULL, OPT_ENGINE},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0}};

/* --help: the whole interface, with the defaults and exit statuses. */
static void usage(FILE *f) {
  fprintf(
      f,
      "Usage: primes [OPTION]... [NUMBER]...\n"
      "Check whether numbers are prime on a pool of worker processes.\n"
      "\n"
      "Numbers are integers from 0 to %" PRIu64 ", taken from the\n"
      "command line, then from each FILE, then from each range. With none,\n"
      "the classic 20-number fixture is checked, in descending order.\n"
      "\n"
      "  -f, --file FILE        one number per line ('-': standard input),\n"
      "                         LF or CRLF; at most %d numbers from the\n"
      "                         command line and files in all\n"
      "      --range A:B        every integer from A up to B excluded\n"
      "      --count            how many primes the ranges hold (with\n"
      "                         --format csv or json, and the seconds)\n"
      "      --primes-only      only the primes of the ranges, in order\n"
      "  -w, --workers N        worker processes (default: online CPUs);\n"
      "                         with --engine mpi, on each rank but 0\n"
      "      --engine ENGINE    processes (default), threads, or mpi: the\n"
      "                         ranks of 'mpirun -np N primes --engine mpi'\n"
      "                         (N >= 2; rank 0 only hands out the work)\n"
      "      --mode MODE        map: results in input order (default);\n"
      "                         completed: each result as soon as known\n"
      "      --sequential       check in this process alone (a baseline)\n"
      "      --algo ALGO        trial: trial division (default, slow on\n"
      "                         purpose); mr: Miller-Rabin\n"
      "      --format FORMAT    text (default), csv or json\n"
      "      --retries N        reruns of a task whose worker died "
      "(default 2)\n"
      "      --task-timeout S   kill a task's worker after S seconds (the\n"
      "                         number fails; a batch's numbers all do)\n"
      "  -h, --help             show this help\n"
      "      --version          show the version and exit\n"
      "\n"
      "Which to use: to list or count the primes of a range, --primes-only\n"
      "or --count: the workers sieve segments with libprimesieve, the\n"
      "fastest way by far. To test given numbers, --algo mr (exact for\n"
      "every 64-bit number, well under a microsecond each). The default,\n"
      "trial division, is the classic's slow algorithm, kept to show the\n"
      "pool at work on long tasks. Both print each number with its time.\n"
      "\n"
      "Exit status: 0 done, 1 some number could not be checked, 2 bad\n"
      "usage or input (nothing was checked), 130 interrupted (129 by\n"
      "SIGHUP, 143 by SIGTERM).\n",
      UINT64_MAX, MAX_LISTED);
}

/* A whole number from lo to hi, or -1. */
static long long parse_bounded(const char *s, long long lo, long long hi) {
  uint64_t x;

  if (pc_parse_u64(s, strlen(s), &x) != PC_OK || x < (uint64_t)lo ||
      x > (uint64_t)hi)
    return -1;
  return (long long)x;
}

/* A positive, finite number of seconds, or -1. */
static double parse_seconds(const char *s) {
  char *end;
  double x;

  errno = 0;
  x = strtod(s, &end);
  if (end == s || *end || errno || !(x > 0) || x > MAX_SECONDS)
    return -1;
  return x;
}

/* The argument that made getopt see option `-<digit>`: a negative number,
 * refused as a number. */
static const char *negative_number(int argc, char **argv, int digit) {
  for (int i = 1; i < argc; i++)
    if (argv[i][0] == '-' && argv[i][1] == digit)
      return argv[i];
  return "-";
}

/* Names the option that getopt refused and the way out. */
static int bad_option(int code, int argc, char **argv) {
  const char *arg = argv[optind - 1];

  if (code == ':') {
    fprintf(stderr, "primes: option '%s' needs a value; see 'primes --help'\n",
            arg);
  } else if (optopt >= '0' && optopt <= '9') {
    arg = negative_number(argc, argv, optopt);
    fputs("primes: command line: ", stderr);
    put_not_integer(arg, strlen(arg));
  } else if (optopt) {
    fprintf(stderr, "primes: unknown option '-%c'; see 'primes --help'\n",
            optopt);
  } else {
    fprintf(stderr, "primes: unknown option '%s'; see 'primes --help'\n", arg);
  }
  return EXIT_USAGE;
}

/* Sets one option of cfg from its value; CONTINUE or EXIT_USAGE. */
static int set_option(int code, const char *val, struct config *cfg) {
  long long x;

  switch (code) {
  case 'w':
    if ((x = parse_bounded(val, 1, MAX_WORKERS)) < 0)
      goto bad_value;
    cfg->workers = (int)x;
    return CONTINUE;
  case OPT_RETRIES:
    if ((x = parse_bounded(val, 0, MAX_RETRIES)) < 0)
      goto bad_value;
    cfg->retries = (unsigned)x;
    return CONTINUE;
  case OPT_TASK_TIMEOUT:
    if ((cfg->task_timeout = parse_seconds(val)) < 0)
      goto bad_value;
    return CONTINUE;
  case OPT_MODE:
    if (strcmp(val, "map") && strcmp(val, "completed"))
      goto bad_value;
    cfg->mode = strcmp(val, "map") ? MODE_COMPLETED : MODE_MAP;
    cfg->mode_given = 1;
    return CONTINUE;
  case OPT_ALGO:
    if (strcmp(val, "trial") && strcmp(val, "mr"))
      goto bad_value;
    cfg->use_mr = strcmp(val, "mr") == 0;
    cfg->algo_given = 1;
    return CONTINUE;
  case OPT_ENGINE:
    if (!strcmp(val, "processes"))
      cfg->engine = PP_ENGINE_PROCESSES;
    else if (!strcmp(val, "threads"))
      cfg->engine = PP_ENGINE_THREADS;
    else if (!strcmp(val, "mpi"))
      cfg->engine = PP_ENGINE_MPI;
    else
      goto bad_value;
    return CONTINUE;
  case OPT_FORMAT:
    if (!strcmp(val, "text"))
      cfg->format = FORMAT_TEXT;
    else if (!strcmp(val, "csv"))
      cfg->format = FORMAT_CSV;
    else if (!strcmp(val, "json"))
      cfg->format = FORMAT_JSON;
    else
      goto bad_value;
    return CONTINUE;
  }
  return CONTINUE;

bad_value:
  switch (code) {
  case 'w':
    fprintf(stderr,
            "primes: --workers '%s': expected a number of processes "
            "from 1 to %d\n",
            val, MAX_WORKERS);
    break;
  case OPT_RETRIES:
    fprintf(stderr, "primes: --retries '%s': expected a number from 0 to %d\n",
            val, MAX_RETRIES);
    break;
  case OPT_TASK_TIMEOUT:
    fprintf(stderr,
            "primes: --task-timeout '%s': expected a positive number "
            "of seconds, at most %.0f\n",
            val, MAX_SECONDS);
    break;
  case OPT_MODE:
    fprintf(stderr, "primes: --mode '%s': expected 'map' or 'completed'\n",
            val);
    break;
  case OPT_ALGO:
    fprintf(stderr, "primes: --algo '%s': expected 'trial' or 'mr'\n", val);
    break;
  case OPT_ENGINE:
    fprintf(stderr,
            "primes: --engine '%s': expected 'processes', 'threads' or "
            "'mpi'\n",
            val);
    break;
  default:
    fprintf(stderr,
            "primes: --format '%s': expected 'text', 'csv' or "
            "'json'\n",
            val);
  }
  return EXIT_USAGE;
}

/* --count or --primes-only, which exclude each other. */
static int set_sieve(enum sieve sieve, struct config *cfg) {
  if (cfg->sieve && cfg->sieve != sieve) {
    fputs("primes: --count and --primes-only exclude each other: keep one\n",
          stderr);
    return EXIT_USAGE;
  }
  cfg->sieve = sieve;
  return CONTINUE;
}

/* What --count and --primes-only refuse: they sieve ranges (all of each,
 * in order), so numbers, files, --algo and --mode have no meaning there. */
static int check_sieve(const struct config *cfg, const struct inputs *in,
                       int numbers_or_files) {
  const char *opt = cfg->sieve == SIEVE_COUNT ? "--count" : "--primes-only";

  if (numbers_or_files)
    fprintf(stderr,
            "primes: %s sieves ranges only: give --range A:B, without "
            "numbers or files\n",
            opt);
  else if (!in->nranges)
    fprintf(stderr, "primes: %s needs --range A:B\n", opt);
  else if (cfg->algo_given)
    fprintf(stderr, "primes: %s sieves with libprimesieve: drop --algo\n", opt);
  else if (cfg->mode_given)
    fprintf(stderr, "primes: %s merges the segments in order: drop --mode\n",
            opt);
  else
    return CONTINUE;
  return EXIT_USAGE;
}

/* What the engine cannot do with the other options; CONTINUE or
 * EXIT_USAGE. */
static int check_engine(const struct config *cfg) {
  if (cfg->sequential && cfg->engine != PP_ENGINE_PROCESSES)
    fputs("primes: --sequential checks in this process alone: drop "
          "--engine\n",
          stderr);
  else if (cfg->task_timeout > 0 && cfg->sequential)
    fputs("primes: --task-timeout needs worker processes: drop --sequential\n",
          stderr);
  else if (cfg->task_timeout > 0 && cfg->engine == PP_ENGINE_THREADS)
    fputs("primes: --task-timeout kills a worker process, which threads "
          "are not: drop --engine threads\n",
          stderr);
  else
    return CONTINUE;
  return EXIT_USAGE;
}

/* The defaults of every option. */
static void config_init(struct config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->engine = PP_ENGINE_PROCESSES;
  cfg->mode = MODE_MAP;
  cfg->format = FORMAT_TEXT;
  cfg->retries = 2;
}

/* Reads the options and the numbers of the command line into cfg (from
 * its defaults, with the files to read) and in. Touches no file, so that
 * every MPI rank can do it. Returns CONTINUE, or the exit status when the
 * program must stop here (--help, bad usage or input). */
static int parse_options(int argc, char **argv, struct config *cfg,
                         struct inputs *in) {
  int code, status = CONTINUE;

  config_init(cfg);
  memset(in, 0, sizeof *in);
  cfg->files = calloc((size_t)argc, sizeof *cfg->files);
  in->ranges = calloc((size_t)argc, sizeof *in->ranges);
  if (!cfg->files || !in->ranges) {
    fputs("primes: out of memory\n", stderr);
    return EXIT_FAILED;
  }
  optind = 0; /* glibc: start afresh (the command line may be read twice) */
  opterr = 0;
  while (status == CONTINUE &&
         (code = getopt_long(argc, argv, ":f:w:h", long_options, NULL)) != -1) {
    if (code == 'h') {
      usage(stdout);
      status = EXIT_SUCCESS;
    } else if (code == 'V') {
      printf("primes (procpool) %s\n", pp_version());
      status = EXIT_SUCCESS;
    } else if (code == '?' || code == ':') {
      status = bad_option(code, argc, argv);
    } else if (code == 'f') {
      cfg->files[cfg->nfiles++] = optarg;
    } else if (code == OPT_RANGE) {
      status = add_range(optarg, in);
    } else if (code == OPT_SEQUENTIAL) {
      cfg->sequential = 1;
    } else if (code == OPT_COUNT || code == OPT_PRIMES_ONLY) {
      status = set_sieve(code == OPT_COUNT ? SIEVE_COUNT : SIEVE_PRIMES, cfg);
    } else {
      status = set_option(code, optarg, cfg);
    }
  }
  cfg->given = optind < argc || cfg->nfiles || in->nranges;
  if (status == CONTINUE)
    status = check_engine(cfg);
  if (status == CONTINUE && cfg->sieve)
    status = check_sieve(cfg, in, optind < argc || cfg->nfiles);
  if (status == CONTINUE)
    status = add_arguments(argv + optind, argc - optind, in);
  return status;
}

/* Reads the files into in, then adds the fixture if nothing was given. */
static int read_inputs(const struct config *cfg, struct inputs *in) {
  int status = CONTINUE;

  for (size_t i = 0; status == CONTINUE && i < cfg->nfiles; i++)
    status = add_file(cfg->files[i], in);
  if (status == CONTINUE)
    status = finish_inputs(in, cfg->given);
  return status;
}

/* Frees what parse_options() and read_inputs() allocated. */
static void free_parse(struct config *cfg, struct inputs *in) {
  free(cfg->files);
  cfg->files = NULL;
  free_inputs(in);
}

/* Whether the command line asks for --engine mpi (the last --engine wins),
 * read without a word, before anything else. */
static int wants_mpi(int argc, char **argv) {
  int code, mpi = 0;

  opterr = 0;
  while ((code = getopt_long(argc, argv, ":f:w:h", long_options, NULL)) != -1)
    if (code == OPT_ENGINE)
      mpi = !strcmp(optarg, "mpi");
  return mpi;
}

/* parse_options() with standard output and error on /dev/null, so that
 * every MPI rank can read the options without a word; rank 0 reads them
 * again to say what was wrong. */
static int parse_silently(int argc, char **argv, struct config *cfg,
                          struct inputs *in) {
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  int out = dup(STDOUT_FILENO), err = dup(STDERR_FILENO);
  int status;

  fflush(stdout);
  if (null >= 0 && out >= 0 && err >= 0) {
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
  }
  status = parse_options(argc, argv, cfg, in);
  fflush(stdout);
  if (null >= 0 && out >= 0 && err >= 0) {
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
  }
  if (null >= 0)
    close(null);
  if (out >= 0)
    close(out);
  if (err >= 0)
    close(err);
  return status;
}

/* --engine mpi: the options read silently, then the pool started on every
 * rank (only rank 0 goes on), then, on rank 0, the options read again
 * aloud if they were refused. Returns CONTINUE with *pool started, or the
 * exit status. */
static int start_mpi(int argc, char **argv, struct config *cfg,
                     struct inputs *in, pp_pool **pool) {
  int status = parse_silently(argc, argv, cfg, in), started;

  /* A refused command line may have stopped before --engine, or asked for
   * --sequential: every rank starts the MPI pool all the same. */
  cfg->engine = PP_ENGINE_MPI;
  cfg->sequential = 0;
  started = start_pool(cfg, pool);

  if (status == CONTINUE)
    return started;
  pp_pool_destroy(*pool);
  *pool = NULL;
  free_parse(cfg, in);
  return parse_options(argc, argv, cfg, in);
}

int main(int argc, char **argv) {
  struct config cfg;
  struct inputs in;
  pp_pool *pool = NULL;
  double t0 = now();
  int status, mpi = wants_mpi(argc, argv);

  if (mpi)
    status = start_mpi(argc, argv, &cfg, &in, &pool);
  else
    status = parse_options(argc, argv, &cfg, &in);
  if (status == CONTINUE)
    status = read_inputs(&cfg, &in);
  if (status == CONTINUE && !mpi)
    status = start_pool(&cfg, &pool);
  if (status == CONTINUE)
    status =
        cfg.sieve ? run_sieve(&cfg, &in, pool, t0) : run(&cfg, &in, pool, t0);
  else
    pp_pool_destroy(pool);
  free_parse(&cfg, &in);
  return status;
}
