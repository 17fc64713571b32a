What `hg importrepo` leaves alone and what it keeps, as a user sees it: both
repositories have a `master` bookmark, the child has a --no-ff style merge and
messages citing its own hashes.

  $ hg init child
  $ cd child
  $ echo one > f.txt
  $ hg commit -qA -m 'one' -u 'Ann <ann@example.org>' -d '1700000000 0'
  $ hg branch -q topic
  $ echo topic >> f.txt
  $ hg commit -q -m 'topic work' -u 'Ann <ann@example.org>' -d '1700000060 0'
  $ hg update -q default
  $ hg merge -q topic
  $ hg commit -q -m "merge $(hg log -r topic -T '{node|short}'), after $(hg log -r 0 -T '{node}' | cut -c1-7)" -u 'Ann <ann@example.org>' -d '1700000120 0'
  $ hg bookmark master
  $ hg log -G -T '{rev} {node|short} {branch} {bookmarks} {desc}\n'
  @    2 6c35149c6eb1 default master merge 5e3105bf4764, after 79eae89
  |\
  | o  1 5e3105bf4764 topic  topic work
  |/
  o  0 79eae89a80a4 default  one
  
  $ cd ..

The parent has its own `master`, active. The import leaves it where it was (the
working directory moves to the merge, so it is no longer active) and brings the
child's as lib/master:

  $ hg init parent
  $ cd parent
  $ echo parent > README
  $ hg commit -qA -m 'parent root'
  $ hg bookmark master
  $ hg importrepo ../child lib
  importing ../child into lib/ (3 changesets to convert)
  merged lib at 27eed3ae796d
  verify lib/: ok
    changesets: 3 in child = 3 imported
    contents: 3 changesets by diffs against the first parent, 0 in full
    merges: 1 in child, 1 imported
    tags: 0 child tags checked under lib/
    bookmarks: 1 child bookmarks checked under lib/
    parent: 1 bookmarks, 0 tags, 1 branch heads, phases and remote names untouched
    hg verify: clean
  lib: 3 changesets imported, head 27eed3ae796d
  $ hg bookmarks
     lib/master                3:211730d3e8ab
     master                    0:a1ce92c66142
  $ hg log -G -T '{rev} {branch} {bookmarks} {desc} [{importnode|short}]\n'
  @    4 default  import lib/ from ../child []
  |\
  | o    3 lib lib/master merge f8d7c72a30f8, after c916552 [6c35149c6eb1]
  | |\
  | | o  2 lib/topic  topic work [5e3105bf4764]
  | |/
  | o  1 lib  one [79eae89a80a4]
  |/
  o  0 default master parent root []
  
The hashes in the merge's message are those of the imported changesets:

  $ hg log -r 3 -T '{desc}\n' | grep -c "$(hg log -r 2 -T '{node|short}'), after $(hg log -r 1 -T '{node}' | cut -c1-7)"
  1
  $ hg log -f -T '{rev}\n' lib/f.txt | wc -l
  2
  $ hg log -f -T '{rev}\n' -R ../child ../child/f.txt | wc -l
  2

The child moves on; a sync moves lib/master and nothing of the parent's:

  $ cd ../child
  $ echo two >> f.txt
  $ hg commit -q -m 'two' -u 'Ann <ann@example.org>' -d '1700000180 0'
  $ cd ../parent
  $ hg importrepo --sync
  syncing ../child into lib/ (1 changesets to convert)
  merged lib at d2ddc7ed554c
  verify lib/: ok
    new changesets: 1 in child = 1 imported
    contents: 1 changesets by diffs against the first parent, 0 in full
    merges: 0 in child, 0 imported
    tags: 0 child tags checked under lib/
    bookmarks: 1 child bookmarks checked under lib/
    parent: 2 bookmarks, 0 tags, 3 branch heads, phases and remote names untouched
    hg verify: clean
  lib: 1 changesets synced, head d2ddc7ed554c
  $ hg bookmarks
     lib/master                5:7da106960235
     master                    0:a1ce92c66142
  $ hg importrepo --sync
  lib: nothing new in ../child
  [1]

Refusals, with Mercurial's detailed exit codes:

  $ hg importrepo --config ui.detailed-exit-code=yes ../child .hgsub
  abort: invalid subdirectory '.hgsub': Mercurial reserves that name
  (choose another name (not .hg, .hgtags, .hgsub, .hgignore, ...))
  [10]
  $ hg importrepo --config ui.detailed-exit-code=yes . other
  abort: source . is the parent repository itself
  (give the path of the repository to import into it)
  [10]
  $ echo dirty >> README
  $ hg importrepo --config ui.detailed-exit-code=yes ../child other
  abort: uncommitted changes in */parent (glob)
  (commit or shelve them (hg commit, hg shelve), then import again)
  [20]
