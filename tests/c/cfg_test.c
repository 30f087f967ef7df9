/*
 * Tru64's cfg_psm_* calls against vigil's libcfg and a real vigild. Each call prints
 * "<what> <framework status> <subsystem errno>" (or a value) to stdout; the daemon's tests compare.
 *
 *   cfg_test members PID   every call and error path around one running process PID (sleep 1000)
 *   cfg_test exited PID    the record of PID once it has been killed with SIGKILL
 *   cfg_test noconnect     every call when vigild cannot be reached
 */
#include <cfg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void st(const char *what, cfg_status_t s)
{
	printf("%s %d %u\n", what, CFG_STATUS_FRAME(s), CFG_STATUS_SUBSYS(s));
}

static void members(pid_t pid)
{
	psm_memrsp_t *m = NULL, *keep;
	psm_catrsp_t *c = NULL;
	char host[256], nodes[300];
	unsigned int i;

	st("catadd", cfg_psm_catadd(_PSM_MYNODE, "cat1"));
	st("catadd_again", cfg_psm_catadd(_PSM_MYNODE, "cat1"));
	st("catadd_null", cfg_psm_catadd(_PSM_MYNODE, NULL));
	st("catadd_badname", cfg_psm_catadd(_PSM_MYNODE, "bad name"));
	st("catadd_zeus", cfg_psm_catadd("zeus", "cat1"));
	st("catadd_empty", cfg_psm_catadd(_PSM_MYNODE, "empty"));
	st("catrem", cfg_psm_catrem(_PSM_MYNODE, "cat1"));
	st("catrem_missing", cfg_psm_catrem(_PSM_MYNODE, "nope"));

	st("catget_all", cfg_psm_catget(_PSM_MYNODE, _PSM_ALLCAT, &c));
	for (i = 0; c != NULL && i < c->crs_listcnt; i++)
		printf("cat %u/%u %s members %u running %u\n", c[i].crs_listidx, c[i].crs_listcnt, c[i].crs_name,
		       c[i].crs_members, c[i].crs_running);
	cfg_psm_catfree(&c);
	printf("catfree_cleared %d\n", c == NULL);
	st("catget_missing", cfg_psm_catget(_PSM_MYNODE, "nope", &c));
	printf("catget_missing_null %d\n", c == NULL);
	st("catget_nullrsp", cfg_psm_catget(_PSM_MYNODE, "cat1", NULL));

	st("memadd", cfg_psm_memadd(_PSM_MYNODE, "cat1", pid));
	st("memadd_again", cfg_psm_memadd(_PSM_MYNODE, "cat1", pid));
	st("memadd_other_category", cfg_psm_memadd(_PSM_MYNODE, "empty", pid));
	st("memadd_nopid", cfg_psm_memadd(_PSM_MYNODE, "cat1", 0x3ffffff0));
	st("memadd_nullcat", cfg_psm_memadd(_PSM_MYNODE, NULL, pid));
	st("memadd_zeus", cfg_psm_memadd("zeus", "cat1", pid));

	st("memget_cat", cfg_psm_memget(_PSM_MYNODE, "cat1", _PSM_ALLPID, &m));
	if (m != NULL) {
		printf("rec %u/%u/%u pid_ok %d exit %u flags %u name_ok %d state %s argv0 %s argv1 %s\n",
		       m->mrs_listidx, m->mrs_listcnt, m->mrs_total, m->mrs_pid == (unsigned int)pid,
		       m->mrs_exitcode, m->mrs_flags, strchr(m->mrs_name, '-') != NULL && atoi(strchr(m->mrs_name, '-') + 1) == pid,
		       m->mrs_state, m->mrs_argv, m->mrs_argv + strlen(m->mrs_argv) + 1);
	}
	/* The synopsis' way: a pointer to the array, cleared. */
	cfg_psm_memfree(&m);
	printf("memfree_cleared %d\n", m == NULL);

	st("memget_pid_anycat", cfg_psm_memget(_PSM_MYNODE, _PSM_ALLCAT, pid, &m));
	printf("count %u\n", m ? m->mrs_listcnt : 99);
	/* The example's way: the array itself. */
	keep = m;
	cfg_psm_memfree(keep);
	st("memget_empty_category", cfg_psm_memget(_PSM_MYNODE, "empty", _PSM_ALLPID, &m));
	if (m != NULL)
		printf("zero_record %u %u %u %u %u %u %d %d %d\n", m->mrs_listidx, m->mrs_listcnt, m->mrs_total,
		       m->mrs_pid, m->mrs_exitcode, m->mrs_flags, m->mrs_name[0], m->mrs_state[0], m->mrs_argv[0]);
	cfg_psm_memfree(&m);
	st("memget_missing_pid", cfg_psm_memget(_PSM_MYNODE, _PSM_ALLCAT, 0x3ffffff0, &m));
	printf("memget_missing_null %d\n", m == NULL);
	st("memget_missing_cat", cfg_psm_memget(_PSM_MYNODE, "nope", _PSM_ALLPID, &m));
	st("memget_nullrsp", cfg_psm_memget(_PSM_MYNODE, "cat1", _PSM_ALLPID, NULL));
	st("memget_allnode", cfg_psm_memget(_PSM_ALLNODE, "cat1", _PSM_ALLPID, &m));
	printf("allnode_count %u\n", m ? m->mrs_listcnt : 99);
	cfg_psm_memfree(&m);
	st("memget_zeus", cfg_psm_memget("zeus", "cat1", _PSM_ALLPID, &m));
	/* A list of nodes succeeds when any answers: zeus does not (no cluster), this host does. */
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = 0;
	snprintf(nodes, sizeof(nodes), "zeus,%s", host);
	st("memget_list", cfg_psm_memget(nodes, "cat1", _PSM_ALLPID, &m));
	printf("list_count %u\n", m ? m->mrs_listcnt : 99);
	cfg_psm_memfree(&m);
	cfg_psm_memfree((psm_memrsp_t **)NULL);

	printf("catname %s %s %d\n", cfg_psm_catname(_PSM_CAT_MOUNTD), cfg_psm_catname(_PSM_CAT_HTTPD),
	       cfg_psm_catname(_PSM_CAT_COUNT) == NULL);
}

static void exited(pid_t pid)
{
	psm_memrsp_t *m = NULL;

	st("memget_exited", cfg_psm_memget(_PSM_MYNODE, "cat1", pid, &m));
	if (m != NULL)
		printf("exited flags %u signaled %d sig %d state %s\n", m->mrs_flags, WIFSIGNALED(m->mrs_exitcode),
		       WTERMSIG(m->mrs_exitcode), m->mrs_state);
	cfg_psm_memfree(&m);
	st("memrem", cfg_psm_memrem(_PSM_MYNODE, "cat1", pid));
	st("memrem_again", cfg_psm_memrem(_PSM_MYNODE, "cat1", pid));
}

static void noconnect(void)
{
	psm_memrsp_t *m = NULL;

	st("memadd", cfg_psm_memadd(_PSM_MYNODE, "cat1", getpid()));
	st("memget", cfg_psm_memget(_PSM_MYNODE, _PSM_ALLCAT, _PSM_ALLPID, &m));
	printf("memget_null %d\n", m == NULL);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 3 && strcmp(argv[1], "members") == 0)
		members(atoi(argv[2]));
	else if (argc == 3 && strcmp(argv[1], "exited") == 0)
		exited(atoi(argv[2]));
	else if (argc == 2 && strcmp(argv[1], "noconnect") == 0)
		noconnect();
	else
		return 2;
	return 0;
}
