`hg importrepo` as a user sees it. The runner (tests/tools/test_transcripts.py)
puts the venv's hg on PATH and an hgrc with a username, fixed commit dates and
the extension loaded by path in HGRCPATH.

A child with a tag that clashes with the parent's, a named branch called like
a parent branch, a file with spaces and an ignore file:

  $ hg init child
  $ cd child
  $ printf 'int main(void) { return 0; }\n' > main.c
  $ printf 'notes\n' > 'read me.txt'
  $ printf 'syntax: glob\n*.o\n' > .hgignore
  $ hg commit -qA -m 'child root' -u 'Ann <ann@example.org>' -d '1700000000 0'
  $ hg tag -u 'Ann <ann@example.org>' -d '1700000060 0' v1.0
  $ hg branch -q stable
  $ echo '/* fix */' >> main.c
  $ hg commit -q -m 'fix on stable' -u 'Bob <bob@example.org>' -d '1700000120 0'
  $ hg update -q default
  $ hg mv -q 'read me.txt' 'guide.txt'
  $ hg commit -q -m 'rename the notes' -u 'Ann <ann@example.org>' -d '1700000180 0'
  $ cd ..

The parent has its own v1.0 and its own stable branch:

  $ hg init parent
  $ cd parent
  $ echo parent > README
  $ hg commit -qA -m 'parent root'
  $ hg tag v1.0
  $ hg branch -q stable
  $ hg commit -q -m 'parent stable'
  $ hg update -q default

What would happen:

  $ hg importrepo --dry-run ../child lib
  import ../child (hg) into lib/
  child: 4 changesets, 2 heads, 1 tags
  changesets to convert: 4 (already imported: 0)
  attach: merged into f25a8808b19f (branch default)
  filemap:
    rename . "lib"
    exclude ".hgtags"
  branchmap:
    default -> lib
    stable -> lib/stable
  tags to create: 1
    lib/v1.0 -> 92f2ae0570e7
  bookmarks to set: 0

Clear aborts that say what to do next, each leaving the parent alone:

  $ hg importrepo ../nowhere lib
  abort: source */nowhere does not exist (glob)
  (give the path of a local Mercurial or git repository, or a URL)
  [255]
  $ hg importrepo -r nope ../child lib
  abort: unknown revision 'nope' in */child (glob)
  (check it with: hg log -R */child -r "nope") (glob)
  [255]
  $ hg importrepo --tag-prefix '' ../child lib
  abort: tag collision: child tag 'v1.0' would become 'v1.0', which the parent already has
  (choose a namespace with --tag-prefix)
  [255]
  $ hg importrepo --branch-prefix '' ../child lib
  abort: branch collision: child branch 'stable' would become 'stable', which exists in the parent
  (choose another name with --branch or --branch-prefix)
  [255]
  $ echo dirty >> README
  $ hg importrepo ../child lib
  abort: uncommitted changes in */parent (glob)
  (commit or shelve them (hg commit, hg shelve), then import again)
  [255]
  $ hg revert -q --no-backup README
  $ hg importrepo --sync lib
  abort: lib is not an import recorded in .hgimports
  (import it first: hg importrepo SOURCE lib)
  [255]

The import, verified before the parent changes:

  $ hg importrepo ../child lib
  importing ../child into lib/ (4 changesets to convert)
  merged lib at 482f46965c01
  verify lib/: ok
    changesets: 4 in child = 3 imported + 1 tag-only dropped
    contents: 3 changesets by diffs against the first parent, 0 in full
    merges: 0 in child, 0 imported
    tags: 1 child tags checked under lib/
    bookmarks: 0 child bookmarks checked under lib/
    parent: 0 bookmarks, 1 tags, 2 branch heads, phases and remote names untouched
    hg verify: clean
  lib: 3 changesets imported, head 482f46965c01
  $ hg log -G -T '{rev} {branch} {tags} {desc|firstline} ({author|user})\n'
  @    6 default tip import lib/ from ../child (lab)
  |\
  | o  5 lib  rename the notes (ann)
  | |
  | | o  4 lib/stable  fix on stable (bob)
  | |/
  | o  3 lib lib/v1.0 child root (ann)
  |/
  | o  2 stable  parent stable (lab)
  |/
  o  1 default  Added tag v1.0 for changeset a1ce92c66142 (lab)
  |
  o  0 default v1.0 parent root (lab)
  
  $ hg tags
  tip                                6:482f46965c01
  lib/v1.0                           3:d2302e7748e5
  v1.0                               0:a1ce92c66142
  $ hg log -f -T '{rev} {desc}\n' lib/guide.txt
  5 rename the notes
  3 child root
  $ cat .hgignore .hgtags
  subinclude:lib/.hgignore
  a1ce92c66142e130f6c17fdec8d7cca3a5dbeaf9 v1.0
  d2302e7748e5a3d18b34a285b47a90310ecf102a lib/v1.0
  $ touch lib/core.o
  $ hg status -i
  I lib/core.o
  $ cat .hgimports
  # Repositories imported into this one by `hg importrepo` (ionlab tools/hgimport).
  # Read by `hg importrepo --sync`; edit `source` if a child moves.
  
  [imports."lib"]
  source = "../child"
  kind = "hg"
  branch = "lib"
  branch_prefix = "lib/"
  tag_prefix = "lib/"
  branches = {}
  exclude = []
  linear = false
  keep_messages = false
  onto = "f25a8808b19f4ec39534e0ea208a904e88e763e3"

A second import of the same subdirectory is refused; a sync with nothing new
does nothing:

  $ hg importrepo ../child lib
  abort: lib is already imported from ../child
  (bring in new changesets with: hg importrepo --sync lib)
  [255]
  $ hg importrepo --sync lib
  lib: nothing new in ../child
  [1]

New child changesets arrive with one more merge:

  $ cd ../child
  $ echo '/* more */' >> main.c
  $ hg commit -q -m 'after the import' -u 'Ann <ann@example.org>' -d '1700000240 0'
  $ hg tag -u 'Ann <ann@example.org>' -d '1700000300 0' v1.1
  $ cd ../parent
  $ hg importrepo --sync
  syncing ../child into lib/ (2 changesets to convert)
  merged lib at 96bf64106b76
  verify lib/: ok
    new changesets: 2 in child = 1 imported + 1 tag-only dropped
    contents: 1 changesets by diffs against the first parent, 0 in full
    merges: 0 in child, 0 imported
    tags: 2 child tags checked under lib/
    bookmarks: 0 child bookmarks checked under lib/
    parent: 0 bookmarks, 2 tags, 4 branch heads, phases and remote names untouched
    hg verify: clean
  lib: 1 changesets synced, head 96bf64106b76
  $ hg log -l 3 -T '{rev} {branch} {tags} {desc|firstline}\n'
  8 default tip sync lib/ from ../child (1 new changesets)
  7 lib lib/v1.1 after the import
  6 default  import lib/ from ../child
  $ hg importrepo --verify
  verify lib/: ok
    changesets: 6 in child = 4 imported + 2 tag-only dropped
    contents: 4 changesets by diffs against the first parent, 0 in full
    merges: 0 in child, 0 imported
    tags: 2 child tags checked under lib/
    bookmarks: 0 child bookmarks checked under lib/
    hg verify: clean

Progress goes through Mercurial's progress bar:

  $ cd ../child
  $ echo '/* again */' >> main.c
  $ hg commit -q -m 'again' -u 'Ann <ann@example.org>' -d '1700000360 0'
  $ cd ../parent
  $ hg importrepo --sync --config progress.debug=true --debug 2>&1 | grep '^converting:'
  converting: 0/2 changesets (0.00%)
  converting: 1/2 changesets (50.00%)
