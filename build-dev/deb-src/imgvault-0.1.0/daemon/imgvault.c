/*
 * imgvault — the command line of the vault: stores, users, keys, import
 * and export, checks and the audit trail.  See imgvault(1).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "conf.h"
#include "keys.h"

/* Options, as bits, so each command says which it takes. */
enum {
	O_ALBUM = 1 << 0, O_FULL = 1 << 1, O_REPAIR = 1 << 2, O_PRISTINE = 1 << 3,
	O_YES = 1 << 4, O_NOPASS = 1 << 5, O_NEWPASS = 1 << 6, O_RECOVERY = 1 << 7,
	O_LIMIT = 1 << 8, O_KDF = 1 << 9, O_THUMB = 1 << 10, O_STRIPPED = 1 << 11,
	O_NOTHUMBS = 1 << 12, O_REBUILD = 1 << 13, O_TTL = 1 << 14, O_MAX_TTL = 1 << 15,
	O_VARIANT = 1 << 16, O_DOWNLOAD = 1 << 17, O_USES = 1 << 18, O_PARTNER = 1 << 19,
	O_NOT_BEFORE = 1 << 20, O_IMAGE = 1 << 21, O_CIDR = 1 << 22, O_FORCE = 1 << 23,
};

struct command {
	const char *name;
	int (*run)(struct cli *c);
	unsigned opts;
	const char *usage;
	const char *help;
};

static const struct command commands[] = {
	{ "init", cmd_init, O_KDF, "init STORE [--server-key FILE] [--user NAME]",
	  "Create a store.  Without --server-key it is a desktop store for one user\n"
	  "(you, or --user NAME as root), locked by a passphrase; a recovery code is\n"
	  "printed once.  With --server-key FILE it is a system store whose users are\n"
	  "unlocked by that key (created, mode 0400, if FILE does not exist)." },
	{ "user", cmd_user, O_KDF | O_NOPASS | O_NEWPASS | O_RECOVERY | O_YES,
	  "user add NAME | list | passwd [NAME] | recover [NAME] | set NAME KEY=VALUE | del NAME --yes",
	  "add NAME            add a vault for Unix user NAME (system store, as root);\n"
	  "                    --passphrase-file sets a passphrase slot too, else\n"
	  "                    --no-passphrase; prints the recovery code once\n"
	  "list                users, their key slots, images and bytes\n"
	  "passwd [NAME]       set a new passphrase (--new-passphrase-file or asked)\n"
	  "recover [NAME]      unlock with the recovery code (--recovery-code-file or\n"
	  "                    asked) and set a new passphrase\n"
	  "set NAME KEY=VALUE  web-read=on|off, quota=SIZE (500M, 20G, none)\n"
	  "del NAME --yes      crypto-shred NAME's vault: key slots wiped, blobs removed" },
	{ "import", cmd_import, O_ALBUM | O_NOTHUMBS, "import [--album ALBUM] [--no-thumbs] PATH...",
	  "Import image files, or every file below a directory, into ALBUM (default\n"
	  "\"default\", created if missing).  Files are admitted by content, from their\n"
	  "headers: the type against the store's allow-list, size, pixels and frames\n"
	  "against its limits (imgvault config).  Others are refused and reported, and\n"
	  "the rest goes on (exit 6).  An existing name gets a new version; its\n"
	  "pristine version stays.  Thumbnails are made in the background as images\n"
	  "are committed, and finished before the command returns; with --no-thumbs\n"
	  "they stay queued for imgvault thumbs (or the daemon).  An image that fails\n"
	  "its full decode there is marked damaged." },
	{ "export", cmd_export, O_ALBUM | O_PRISTINE | O_FORCE,
	  "export [--album ALBUM] [--pristine] [--force] DEST",
	  "Write every image (of ALBUM) as plain files to DEST/ALBUM/NAME, checking\n"
	  "each against its recorded SHA-256.  Files are created new, never written\n"
	  "through a symbolic link; an existing file stops the export unless --force,\n"
	  "which replaces it by renaming a new file over it." },
	{ "ls", cmd_ls, 0, "ls [ALBUM]",
	  "List the albums, or the images of ALBUM: size, date, type, name." },
	{ "cat", cmd_cat, O_PRISTINE | O_THUMB | O_STRIPPED,
	  "cat [--pristine | --thumb | --stripped] ALBUM/NAME",
	  "Write an image's bytes to standard output (not to a terminal): the current\n"
	  "version, the first one (--pristine), its thumbnail (--thumb; made now if it\n"
	  "is not ready), or the current version with location and device metadata\n"
	  "removed as share links serve it (--stripped)." },
	{ "thumbs", cmd_thumbs, O_REBUILD, "thumbs [--rebuild]",
	  "Make the thumbnails still queued (after import --no-thumbs, or an\n"
	  "interruption); --rebuild remakes every one (after changing thumb.size)." },
	{ "mount", cmd_mount, 0, "mount MOUNTPOINT",
	  "Mount your vault with imgvaultd (asking for the passphrase, or with\n"
	  "--passphrase-file): MOUNTPOINT/<album>/{original,thumb,pristine}/<name>." },
	{ "unmount", cmd_unmount, 0, "unmount MOUNTPOINT",
	  "Unmount it; what open files hold is committed first." },
	{ "lock", cmd_lock, 0, "lock [--user NAME]",
	  "Make the running imgvaultd forget your vault's keys while it stays mounted:\n"
	  "below your vault's directory everything then fails with \"Permission denied\"\n"
	  "and the control socket answers \"the vault is locked\".  Refused while files\n"
	  "of the vault are open (close them first).  As root on a system mount,\n"
	  "--user NAME locks NAME's vault." },
	{ "unlock", cmd_unlock, 0, "unlock [--passphrase-file F] [--user NAME]",
	  "Give the running imgvaultd your vault's keys back: it asks for the\n"
	  "passphrase (or reads --passphrase-file) and sends it over the control\n"
	  "socket.  As root on a system mount, --user NAME unlocks NAME's vault with\n"
	  "the server key the daemon holds, without a passphrase." },
	{ "status", cmd_status, 0, "status",
	  "Whether the store is mounted: with imgvaultd running, its mount point and\n"
	  "mode, whether your vault is locked, and how many of your thumbnails are\n"
	  "still to make.  While the daemon holds the store, status, ls, cat, import,\n"
	  "rm, lock and unlock go through its control socket; other commands wait\n"
	  "until it stops." },
	{ "config", cmd_config, 0, "config [KEY=VALUE...]",
	  "Show or change the store's settings: image.max-bytes (50M), image.max-pixels\n"
	  "(100000000), image.max-frames (500), image.max-total-pixels (width x height x\n"
	  "frames, 400000000), image.decode-memory (what thumbnail decodes may take at\n"
	  "once, 512M), image.types (jpeg,png,gif,webp,heic,avif) and thumb.size (256).\n"
	  "Changes apply to images committed afterwards." },
	{ "rm", cmd_rm, 0, "rm ALBUM/NAME...",
	  "Delete images, their pristine versions included." },
	{ "fsck", cmd_fsck, O_REPAIR, "fsck [--repair]",
	  "Check the store: the catalog, every row against its vault's seal, the audit\n"
	  "chain, every blob's structure and, for the vaults it can unlock, every byte\n"
	  "against its SHA-256.  Leftovers of interrupted writes are removed (kept while\n"
	  "a seal does not match).  --repair marks damaged images as damaged and accepts\n"
	  "an edited catalog as it is (sealing it again).  Exit 5 when damage is found." },
	{ "rekey", cmd_rekey, O_FULL | O_KDF, "rekey [--full]",
	  "Rotate a vault's user key: slots resealed, metadata re-encrypted, every blob\n"
	  "header rewrapped, or with --full every blob re-encrypted under a new file\n"
	  "key.  A new recovery code is printed.  Interrupted, it resumes when run again." },
	{ "audit", cmd_audit, O_LIMIT, "audit [-n N] | audit verify | audit head",
	  "Show the audit trail (the last N entries), or verify its hash chain and\n"
	  "sealed head (exit 5 when broken; the seal needs the server key, or your\n"
	  "--passphrase-file in a desktop store), or print the entry count and head hash\n"
	  "to keep outside the store: a rolled-back store shows an older head." },
	{ "share", cmd_share, O_TTL | O_VARIANT | O_DOWNLOAD | O_USES | O_PARTNER | O_NOT_BEFORE,
	  "share PATH [--ttl 1h] [--variant original|thumb|pristine] [--download]\n"
	  "        [--uses N] [--partner NAME] [--not-before TIME]",
	  "Make a share link to one of your images, signed by the running imgvaultd.\n"
	  "PATH is ALBUM/NAME or a file inside the mount (MOUNT/ALBUM/VIEW/NAME, in a\n"
	  "system mount MOUNT/USER/ALBUM/VIEW/NAME; VIEW thumb or pristine picks the\n"
	  "variant unless --variant is given).  Prints the link on the first line,\n"
	  "then its preview page, its expiry and its token id (what shares and\n"
	  "revoke name it by).  The link is a secret: whoever has it can fetch the\n"
	  "image until it expires.\n"
	  "  --ttl D          lifetime: 90s, 30m, 1h, 48h, 7d (default share.ttl, 1h;\n"
	  "                   a partner's own default with --partner); past the\n"
	  "                   vault's maximum (share.max-ttl, 7d) it is refused\n"
	  "  --variant V      original (location and device metadata removed, the\n"
	  "                   default), thumb, or pristine (the first version, as is)\n"
	  "  --download       served as an attachment, not shown in the browser\n"
	  "  --uses N         works for N complete downloads\n"
	  "  --partner NAME   a partner's link: works only from its networks\n"
	  "  --not-before T   not valid before T: +10m, Unix seconds, or\n"
	  "                   YYYY-MM-DDTHH:MM:SSZ (UTC)\n"
	  "With --json: {\"url\", \"page\", \"token_id\", \"not_before\", \"expires\"}." },
	{ "shares", cmd_shares, O_IMAGE | O_PARTNER, "shares [--image PATH | --partner NAME]",
	  "List your live links (root in a system store: everyone's): token id,\n"
	  "variant, partner, uses (\"1/3\", or \"-\" for unlimited), time left, image.\n"
	  "Links are listed by token id; tokens are never shown again." },
	{ "revoke", cmd_revoke, O_IMAGE | O_PARTNER, "revoke TOKEN-ID | --image PATH | --partner NAME",
	  "Revoke one link by its token id (32 hex digits, from share or shares),\n"
	  "every link to an image (every variant: original, thumb and pristine), or\n"
	  "every link of yours for a partner (root in a system store: everyone's).\n"
	  "Prints how many links were revoked." },
	{ "keys", cmd_keys, 0, "keys [list] | keys rotate | keys retire KID | keys export [FILE]",
	  "The Ed25519 keys links are signed with.\n"
	  "list          every key: id, owner, created, current/live/retired\n"
	  "rotate        a new key signs new links; links of older keys keep working\n"
	  "retire KID    links signed with key KID (16 hex digits) stop working; the\n"
	  "              key in use is rotated first\n"
	  "export [FILE] the public keyring the gateway verifies links with, to FILE\n"
	  "              (mode 0644) or standard output\n"
	  "Rotating and retiring are for the vault's owner (root in a system store)." },
	{ "partner", cmd_partner, O_CIDR | O_TTL | O_MAX_TTL,
	  "partner add NAME [--cidr CIDR]... [--ttl 48h] [--max-ttl 7d] | partner list\n"
	  "        | partner disable NAME",
	  "Partners are named recipients of links: a partner's link works only from\n"
	  "its networks.\n"
	  "add NAME       --cidr: an allow-list of IPv4/IPv6 networks (192.0.2.0/24,\n"
	  "               2001:db8::/32, host bits zero; repeat it or separate with\n"
	  "               commas; none: anywhere); --ttl: its links' default lifetime\n"
	  "               (48h); --max-ttl: their maximum (at most share.max-ttl)\n"
	  "list           the partners and their settings\n"
	  "disable NAME   every link made for NAME stops working\n"
	  "Adding and disabling are for the vault's owner (root in a system store)." },
};

static const char global_help[] =
	"Options:\n"
	"  -s, --store DIR           the store (default: $IMGVAULT_STORE, else\n"
	"                            /var/lib/imgvault for root, ~/.local/share/imgvault)\n"
	"  -k, --server-key FILE     system store's server key (default:\n"
	"                            $IMGVAULT_SERVER_KEY, $CREDENTIALS_DIRECTORY/server.key,\n"
	"                            /etc/imgvault/server.key)\n"
	"  -u, --user NAME           act on NAME's vault (root)\n"
	"      --passphrase-file F   read the passphrase from F's first line\n"
	"      --control PATH        a running imgvaultd's control socket (default: named\n"
	"                            in the store's lock, or /run/imgvault/control.sock)\n"
	"      --config FILE         settings, [imgvault] section: store, server-key,\n"
	"                            control (default /etc/imgvault/imgvault.conf when\n"
	"                            it exists; flags and $IMGVAULT_* override it)\n"
	"      --check-config        check the settings file and exit\n"
	"      --new-passphrase-file F   the new passphrase (passwd, recover)\n"
	"      --recovery-code-file F    the recovery code (recover)\n"
	"      --no-passphrase       user add: no passphrase slot\n"
	"      --kdf COST            Argon2id cost of new passphrases: interactive,\n"
	"                            moderate (default) or sensitive\n"
	"  -a, --album ALBUM         import/export: the album\n"
	"      --pristine            cat/export: the first version, not the current\n"
	"      --force               export: replace existing files (by rename)\n"
	"      --thumb, --stripped   cat: the thumbnail; the metadata-stripped image\n"
	"      --no-thumbs           import: leave thumbnails queued\n"
	"      --rebuild             thumbs: remake every thumbnail\n"
	"      --full                rekey: re-encrypt every blob\n"
	"      --repair              fsck: mark damaged images\n"
	"      --ttl D, --max-ttl D  share, partner add: lifetimes (90s, 30m, 1h, 7d)\n"
	"      --variant V           share: original, thumb or pristine\n"
	"      --download            share: served as an attachment\n"
	"      --uses N              share: N downloads at most\n"
	"      --not-before T        share: not valid before T (+10m, Unix time, ISO)\n"
	"      --partner NAME        share, shares, revoke: a partner's links\n"
	"      --image PATH          shares, revoke: the links to one image\n"
	"      --cidr CIDR           partner add: a network it may fetch from\n"
	"  -n N                      audit: the last N entries\n"
	"  -y, --yes                 do not ask\n"
	"      --json                machine-readable output, one JSON object a line\n"
	"      --no-progress         no progress bar\n"
	"  -q, --quiet               only errors\n"
	"  -h, --help                this help; COMMAND --help for one command\n"
	"  -V, --version\n"
	"\n"
	"Exit codes: 0 done, 1 failed, 2 bad command line, 3 wrong passphrase or key,\n"
	"4 store in use by another process, 5 damage found, 6 some inputs refused.\n";

static void print_help(FILE *f, const char *prog)
{
	fprintf(f, "usage: %s [OPTIONS] COMMAND [ARGS]\n\n"
		"imgvault keeps images encrypted in a store: each user's albums, names and\n"
		"pictures are readable only with their key.\n\nCommands:\n", prog);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %s\n", commands[i].usage);
	fprintf(f, "\n%s", global_help);
}

static void print_command_help(FILE *f, const char *prog, const struct command *cmd)
{
	fprintf(f, "usage: %s %s\n\n%s\n\n%s", prog, cmd->usage, cmd->help, global_help);
}

enum {
	OPT_PASSFILE = 256, OPT_NEWPASS, OPT_RECOVERY, OPT_NOPASS, OPT_KDF, OPT_PRISTINE,
	OPT_FULL, OPT_REPAIR, OPT_JSON, OPT_NOPROGRESS, OPT_THUMB, OPT_STRIPPED, OPT_NOTHUMBS,
	OPT_REBUILD, OPT_CONTROL, OPT_TTL, OPT_MAX_TTL, OPT_VARIANT, OPT_DOWNLOAD, OPT_USES,
	OPT_PARTNER, OPT_NOT_BEFORE, OPT_IMAGE, OPT_CIDR, OPT_CONFIG, OPT_CHECK_CONFIG,
	OPT_FORCE,
};

static const struct option long_options[] = {
	{ "store", required_argument, NULL, 's' },
	{ "server-key", required_argument, NULL, 'k' },
	{ "user", required_argument, NULL, 'u' },
	{ "album", required_argument, NULL, 'a' },
	{ "passphrase-file", required_argument, NULL, OPT_PASSFILE },
	{ "new-passphrase-file", required_argument, NULL, OPT_NEWPASS },
	{ "recovery-code-file", required_argument, NULL, OPT_RECOVERY },
	{ "no-passphrase", no_argument, NULL, OPT_NOPASS },
	{ "kdf", required_argument, NULL, OPT_KDF },
	{ "pristine", no_argument, NULL, OPT_PRISTINE },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "full", no_argument, NULL, OPT_FULL },
	{ "repair", no_argument, NULL, OPT_REPAIR },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "no-progress", no_argument, NULL, OPT_NOPROGRESS },
	{ "thumb", no_argument, NULL, OPT_THUMB },
	{ "stripped", no_argument, NULL, OPT_STRIPPED },
	{ "no-thumbs", no_argument, NULL, OPT_NOTHUMBS },
	{ "rebuild", no_argument, NULL, OPT_REBUILD },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "ttl", required_argument, NULL, OPT_TTL },
	{ "max-ttl", required_argument, NULL, OPT_MAX_TTL },
	{ "variant", required_argument, NULL, OPT_VARIANT },
	{ "download", no_argument, NULL, OPT_DOWNLOAD },
	{ "uses", required_argument, NULL, OPT_USES },
	{ "partner", required_argument, NULL, OPT_PARTNER },
	{ "not-before", required_argument, NULL, OPT_NOT_BEFORE },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "cidr", required_argument, NULL, OPT_CIDR },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
	{ "yes", no_argument, NULL, 'y' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* The environment beats the settings file (flags beat both): a file
 * setting whose variable is set is dropped from @a. */
static void drop_overridden(struct conf_args *a)
{
	static const char *const env_of[][2] = {
		{ "--store=", "IMGVAULT_STORE" },
		{ "--server-key=", "IMGVAULT_SERVER_KEY" },
	};

	for (int i = 1; i <= a->n_file; i++) {
		for (size_t k = 0; k < sizeof(env_of) / sizeof(env_of[0]); k++) {
			const char *env = getenv(env_of[k][1]);
			if (!env || !*env || strncmp(a->argv[i], env_of[k][0],
						     strlen(env_of[k][0])) != 0)
				continue;
			free(a->argv[i]);
			memmove(&a->argv[i], &a->argv[i + 1],
				(size_t)(a->argc - i) * sizeof(a->argv[0]));  /* with NULL */
			a->argc--;
			a->n_file--;
			i--;
			break;
		}
	}
}

/* imgvault.conf's [imgvault] settings before the command line's options.
 * 0, or an exit code. */
static int load_settings(int *argc, char ***argv, struct conf_args *ca)
{
	char err[1024];
	const char *given = conf_find_option(*argc, *argv, "config", true);
	int ret = conf_load(given, CONF_IMGVAULT, *argc, *argv, ca, err, sizeof(err));

	if (ret < 0) {
		fprintf(stderr, "imgvault: %s\n", ret == -ENOMEM ? "out of memory" : err);
		return ret == -ENOMEM ? EXIT_FAIL : CONF_EXIT_BAD;
	}
	drop_overridden(ca);
	*argc = ca->argc;
	*argv = ca->argv;
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = { .prog = "imgvault", .progress = true, .limit = -1 };
	const struct command *cmd = NULL;
	struct rlimit no_core = { 0, 0 };
	unsigned used = 0;
	bool help = false, check_config = false;
	static struct conf_args ca;   /* lives as long as the program: c points into it */
	const char *config = conf_find_option(argc, argv, "config", true);
	int opt, ret;

	/* Keys and passphrases must never end up in a core file. */
	setrlimit(RLIMIT_CORE, &no_core);
	/* A closed output pipe is an error to report, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	if (keys_init() < 0) {
		fprintf(stderr, "imgvault: cannot initialise libsodium\n");
		return EXIT_FAIL;
	}
	if ((ret = load_settings(&argc, &argv, &ca)) != 0)
		return ret;
	while ((opt = getopt_long(argc, argv, "s:k:u:a:n:yqhV", long_options, NULL)) != -1) {
		switch (opt) {
		case 's': c.store = optarg; break;
		case 'k': c.server_key_path = optarg; break;
		case 'u': c.user = optarg; break;
		case 'a': c.album = optarg; used |= O_ALBUM; break;
		case 'n': {
			char *end;
			c.limit = strtol(optarg, &end, 10);
			if (*end || c.limit < 0)
				return cli_usage(&c, "-n takes a count, not '%s'", optarg);
			used |= O_LIMIT;
			break;
		}
		case OPT_PASSFILE: c.passphrase_file = optarg; break;
		case OPT_NEWPASS: c.new_passphrase_file = optarg; used |= O_NEWPASS; break;
		case OPT_RECOVERY: c.recovery_code_file = optarg; used |= O_RECOVERY; break;
		case OPT_NOPASS: c.no_passphrase = true; used |= O_NOPASS; break;
		case OPT_KDF: c.kdf = optarg; used |= O_KDF; break;
		case OPT_PRISTINE: c.pristine = true; used |= O_PRISTINE; break;
		case OPT_FORCE: c.force = true; used |= O_FORCE; break;
		case OPT_FULL: c.full = true; used |= O_FULL; break;
		case OPT_REPAIR: c.repair = true; used |= O_REPAIR; break;
		case OPT_JSON: c.json = true; break;
		case OPT_NOPROGRESS: c.progress = false; break;
		case OPT_THUMB: c.thumb = true; used |= O_THUMB; break;
		case OPT_STRIPPED: c.stripped = true; used |= O_STRIPPED; break;
		case OPT_NOTHUMBS: c.no_thumbs = true; used |= O_NOTHUMBS; break;
		case OPT_REBUILD: c.rebuild = true; used |= O_REBUILD; break;
		case OPT_CONTROL: c.control = optarg; break;
		case OPT_TTL: c.ttl = optarg; used |= O_TTL; break;
		case OPT_MAX_TTL: c.max_ttl = optarg; used |= O_MAX_TTL; break;
		case OPT_VARIANT: c.variant = optarg; used |= O_VARIANT; break;
		case OPT_DOWNLOAD: c.download = true; used |= O_DOWNLOAD; break;
		case OPT_USES: c.uses = optarg; used |= O_USES; break;
		case OPT_PARTNER: c.partner = optarg; used |= O_PARTNER; break;
		case OPT_NOT_BEFORE: c.not_before = optarg; used |= O_NOT_BEFORE; break;
		case OPT_IMAGE: c.image = optarg; used |= O_IMAGE; break;
		case OPT_CIDR:
			if (c.ncidrs == CLI_MAX_CIDRS)
				return cli_usage(&c, "at most %d --cidr options (each may hold "
						 "several networks, comma-separated)", CLI_MAX_CIDRS);
			c.cidrs[c.ncidrs++] = optarg;
			used |= O_CIDR;
			break;
		case OPT_CONFIG: break;         /* read before parsing */
		case OPT_CHECK_CONFIG: check_config = true; break;
		case 'y': c.yes = true; used |= O_YES; break;
		case 'q': c.quiet = true; break;
		case 'h': help = true; break;
		case 'V':
			printf("imgvault %s\n", IMGVAULT_VERSION);
			return EXIT_OK;
		default:
			return cli_usage(&c, "see --help");
		}
	}
	if (optind < argc) {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(argv[optind], commands[i].name))
				cmd = &commands[i];
		if (!cmd)
			return cli_usage(&c, "unknown command '%s'", argv[optind]);
		optind++;
	}
	if (check_config) {
		printf("imgvault: settings are valid (%s)\n", access(conf_path(config), F_OK) == 0 ?
		       conf_path(config) : "no settings file");
		return EXIT_OK;
	}
	if (help) {
		if (cmd)
			print_command_help(stdout, c.prog, cmd);
		else
			print_help(stdout, c.prog);
		return EXIT_OK;
	}
	if (!cmd) {
		print_help(stderr, c.prog);
		return EXIT_USAGE;
	}
	c.command = cmd->name;
	if (used & ~cmd->opts)
		return cli_usage(&c, "%s does not take some of the options given; see "
				 "imgvault %s --help", cmd->name, cmd->name);
	c.args = argv + optind;
	c.nargs = argc - optind;
	if (!strcmp(cmd->name, "status") || !strcmp(cmd->name, "ls") ||
	    !strcmp(cmd->name, "cat") || !strcmp(cmd->name, "import") ||
	    !strcmp(cmd->name, "rm") || !strcmp(cmd->name, "lock") ||
	    !strcmp(cmd->name, "unlock")) {
		int code;
		if (cli_remote(&c, &code))
			return code;
	}
	return cmd->run(&c);
}
