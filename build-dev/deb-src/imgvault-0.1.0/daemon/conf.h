/*
 * conf — /etc/imgvault/imgvault.conf, the settings file of the three
 * programs (imgvault.conf(5)).
 *
 * The format is INI, as systemd units and git config are written:
 *
 *     # a comment (a whole line, or after whitespace)
 *     [gateway]
 *     listen = 127.0.0.1:8080
 *     trusted-proxy = 10.0.0.0/8, 192.0.2.1
 *     ban-time = 10m
 *
 * One section per program: [imgvaultd], [gateway] (imgvault-gateway) and
 * [imgvault] (the command line).  A key is the name of the program's long
 * option, so the file and the command line read alike.  Each program checks
 * the whole file (a typo in any section is an error wherever it is found)
 * and takes its own section.
 *
 * How a program uses it: the file's settings become options ("--key=value")
 * placed before the command line's, so getopt reads them first and a flag
 * given on the command line overrides them (the last one wins).  Lists
 * (trusted-proxy, cors-origin) are the exception the program handles: a
 * list given on the command line replaces the file's (conf_args.n_file
 * tells the two apart).
 *
 * Values are checked here, with the line they came from, so a bad one is
 * reported as "FILE:LINE: …" before anything starts.  Durations (90s, 30m,
 * 1h, 7d) become whole seconds; booleans (yes/no, true/false, on/off, 1/0)
 * become the bare flag or nothing; paths must be absolute.
 *
 * No state outside the structures the caller holds.
 */
#ifndef IMGVAULT_CONF_H
#define IMGVAULT_CONF_H

#include <stdbool.h>
#include <stddef.h>

/* Read at start when it exists; a missing default file is no error. */
#define CONF_DEFAULT_PATH "/etc/imgvault/imgvault.conf"

/* Exit code of a bad settings file, like a bad command line. */
#define CONF_EXIT_BAD 2

enum conf_section {
	CONF_IMGVAULTD,       /* [imgvaultd] */
	CONF_GATEWAY,         /* [gateway]   */
	CONF_IMGVAULT,        /* [imgvault]  */
};

/*
 * An argument vector: argv[0], then the file's settings as options
 * (argv[1 .. n_file]), then the command line's arguments after its argv[0],
 * then NULL.  Owns every string (conf_args_release frees them).
 */
struct conf_args {
	char **argv;
	int argc;
	int n_file;
};

/*
 * The value of option --NAME in @argv ("--NAME VALUE" or "--NAME=VALUE"),
 * looking no further than a "--"; NULL when absent.  For a flag without a
 * value, "" when present.  Lets a program find --config before it parses.
 */
const char *conf_find_option(int argc, char **argv, const char *name, bool takes_value);

/*
 * Reads @path, checks every section, and builds *out from @sec's settings
 * and the command line @argc/@argv.  @path NULL means CONF_DEFAULT_PATH,
 * which may be missing (or unreadable, for a user who is not root: it holds
 * no secret, but an administrator may have closed it); a file named on the
 * command line must exist.  With no file, *out is the command line alone.
 *
 * Returns 0, -ENOMEM, or -EINVAL with @err ("FILE:LINE: what is wrong;
 * what is expected") for a file that cannot be read or is not valid.
 */
int conf_load(const char *path, enum conf_section sec, int argc, char **argv,
	      struct conf_args *out, char *err, size_t errcap);

/* Frees what *a holds (not @a). */
void conf_args_release(struct conf_args *a);

/* The file a program reads: @given (--config), else the default. */
const char *conf_path(const char *given);

#endif
