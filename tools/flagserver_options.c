/*
 * flagserver_options: the command line.
 *
 * DESIGN. getopt_long() reads the options; each value is checked where it
 * is parsed, and any bad input exits 2 with a message naming the option,
 * the value and the fix. No option is acted upon here.
 */
#include "flagserver.h"

#include <procpool.h> /* PP_VERSION_STRING only: the server links no pool */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "Usage: flagserver [OPTIONS] [PORT]\n"
    "Serve flag images at /flags/<cc>/<cc>.gif (GET and HEAD), and their\n"
    "list at /flags/. HEAD and the list are answered at once.\n"
    "\n"
    "  -d, --directory DIR   serve DIR/<cc>/<cc>.gif (codes from\n"
    "                        DIR/country_codes.txt when present); default:\n"
    "                        194 generated flags\n"
    "  -D, --delay MIN[:MAX] wait MIN to MAX seconds before each answer\n"
    "  -e, --error-rate P    answer a fraction P (0..1) with 418 I'm a Teapot\n"
    "  -b, --bind ADDR       address to listen on (default 127.0.0.1)\n"
    "  -p, --port N          port (default 8000; 0 picks a free one); a\n"
    "                        lone PORT argument says the same\n"
    "  -l, --labels          serve LOCAL on PORT (no delay), DELAY on PORT+1\n"
    "                        (0.5-5 s) and ERROR on PORT+2 (0.5-5 s, 25%\n"
    "                        418s); PORT defaults to 8000\n"
    "  -v, --verbose         log each request to stderr\n"
    "  -h, --help            show this help\n"
    "      --version         show the version and exit\n"
    "\n"
    "Prints 'Serving flags on http://ADDR:PORT/flags' per site once ready.\n"
    "SIGINT or SIGTERM stops it and prints to stderr:\n"
    "  served N requests: A ok, B not found, C errors(418)\n";

/* Prints a usage error naming the input and exits with EXIT_USAGE. */
void fs_die_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fs_die_usage(const char *fmt, ...) {
  va_list ap;
  fputs("flagserver: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(EXIT_USAGE);
}

/* Non-zero if s holds only decimal digits, points and the bytes of
 * `also`: strtod() alone would also read hex ("0x10"), "inf" and "nan". */
static int is_decimal(const char *s, const char *also) {
  for (; *s; s++)
    if (!(*s >= '0' && *s <= '9') && *s != '.' && !strchr(also, *s))
      return 0;
  return 1;
}

/* Parses "MIN" or "MIN:MAX" decimal seconds; exits with a usage error if
 * bad. */
static void parse_delay(const char *arg, struct options *o) {
  char *end;
  o->delay_min = strtod(arg, &end);
  o->delay_max = o->delay_min;
  if (end != arg && *end == ':') {
    const char *max = end + 1;
    o->delay_max = strtod(max, &end);
    if (end == max)
      end = (char *)arg;
  }
  if (!is_decimal(arg, ":"))
    end = (char *)arg;
  if (end == arg || *end || !isfinite(o->delay_min) ||
      !isfinite(o->delay_max) || o->delay_min < 0 ||
      o->delay_max < o->delay_min || o->delay_max > MAX_DELAY)
    fs_die_usage("--delay must be MIN or MIN:MAX seconds with 0 <= MIN <= MAX "
                 "<= %g, got '%s'",
                 MAX_DELAY, arg);
  o->delay_set = 1;
}

/* Parses the error rate; exits with a usage error if not in [0, 1]. */
static void parse_error_rate(const char *arg, struct options *o) {
  char *end;
  o->error_rate = strtod(arg, &end);
  if (!is_decimal(arg, "") || end == arg || *end ||
      !(o->error_rate >= 0 && o->error_rate <= 1))
    fs_die_usage("--error-rate must be between 0 and 1, got '%s'", arg);
  o->error_set = 1;
}

/* Parses the port; exits with a usage error if not in [0, 65535]. */
static void parse_port(const char *arg, struct options *o) {
  char *end;
  errno = 0;
  o->port = strtol(arg, &end, 10);
  if (end == arg || *end || errno || o->port < 0 || o->port > 65535)
    fs_die_usage("--port must be an integer from 0 to 65535 (0 picks a free "
                 "port), got '%s'",
                 arg);
}

/* Fills *o from argv; exits 0 after --help and 2 on any bad input. */
void fs_parse_options(int argc, char **argv, struct options *o) {
  static const struct option longopts[] = {
      {"directory", required_argument, NULL, 'd'},
      {"delay", required_argument, NULL, 'D'},
      {"error-rate", required_argument, NULL, 'e'},
      {"bind", required_argument, NULL, 'b'},
      {"port", required_argument, NULL, 'p'},
      {"labels", no_argument, NULL, 'l'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};
  int c;

  *o = (struct options){.bind = "127.0.0.1", .port = -1};
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":d:D:e:b:p:lvh", longopts, NULL)) !=
         -1) {
    switch (c) {
    case 'd':
      o->directory = optarg;
      break;
    case 'D':
      parse_delay(optarg, o);
      break;
    case 'e':
      parse_error_rate(optarg, o);
      break;
    case 'b':
      o->bind = optarg;
      break;
    case 'p':
      parse_port(optarg, o);
      break;
    case 'l':
      o->labels = 1;
      break;
    case 'v':
      o->verbose = 1;
      break;
    case 'h':
      fputs(usage_text, stdout);
      exit(0);
    case 'V':
      printf("flagserver (procpool) %s\n", PP_VERSION_STRING);
      exit(0);
    case ':':
      fs_die_usage("option '%s' needs a value; see flagserver --help",
                   argv[optind - 1]);
    default:
      if (optopt)
        fs_die_usage("unknown option '-%c'; see flagserver --help", optopt);
      fs_die_usage("unknown option '%s'; see flagserver --help",
                   argv[optind - 1]);
    }
  }
  if (argc - optind == 1 && o->port >= 0)
    fs_die_usage("the port is given twice, as --port and as '%s'; give one",
                 argv[optind]);
  if (argc - optind == 1)
    parse_port(argv[optind++], o); /* the classic `flagserver 8002` */
  if (optind < argc)
    fs_die_usage("unexpected argument '%s'; see flagserver --help",
                 argv[optind]);
  if (o->labels && (o->delay_set || o->error_set))
    fs_die_usage("--labels sets its own delays and error rates; drop --delay "
                 "and --error-rate, or drop --labels");
  if (o->port < 0)
    o->port = 8000;
  if (o->labels && o->port > 65535 - (MAX_SITES - 1))
    fs_die_usage("--labels uses ports PORT to PORT+2, so --port must be at "
                 "most %d, got '%ld'",
                 65535 - (MAX_SITES - 1), o->port);
}
