"""The MRML scene and the module logics every scene helper needs, in one object.

Three ways to get one: a bare scene built here (command line, tests), desktop
3D Slicer's own scene and logics, or a trame-slicer ``SlicerApp`` (web app).
The helpers in this package only talk to ``ctx.scene`` and ``ctx.<x>_logic``, so
the same code runs in all three.
"""

import tempfile

# Module logics the helpers use: attribute -> (name the application logic knows
# it by, slicer class). The names are the ones Slicer's modules register.
_LOGICS = {
    "volumes_logic": ("Volumes", "vtkSlicerVolumesLogic"),
    "segmentations_logic": ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    "markups_logic": ("Markups", "vtkSlicerMarkupsLogic"),
    "sequences_logic": ("Sequences", "vtkSlicerSequencesLogic"),
    "tables_logic": ("Tables", "vtkSlicerTablesLogic"),
    "subject_hierarchy_logic": ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
}


class SceneContext:
    """``scene``, ``app_logic`` and the module logics (see ``_LOGICS``) of one scene."""

    def __init__(self, scene, app_logic, **logics):
        self.scene = scene
        self.app_logic = app_logic
        self.colors_logic = (
            logics.pop("colors_logic", None) or app_logic.GetModuleLogic("Colors") or app_logic.GetColorLogic()
        )
        for attribute in _LOGICS:
            setattr(self, attribute, logics.pop(attribute, None))
        if logics:
            raise TypeError(f"unknown logics: {', '.join(sorted(logics))}")
        self._cache_dir = None  # MRB reading needs a cache folder; made on first use
        self._io_logics = None

    # -- constructors -------------------------------------------------------

    @classmethod
    def headless(cls):
        """A fresh scene with its own application logic (no Slicer application)."""
        import slicer
        from vtkmodules.vtkCommonCore import vtkCollection

        scene = slicer.vtkMRMLScene()
        # qSlicerCoreApplication adds one crosshair; slice views expect it.
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetCrosshairName("default")
        scene.AddNode(crosshair)

        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(scene)
        app_logic.GetColorLogic().SetMRMLScene(scene)
        app_logic.GetColorLogic().AddDefaultColorNodes()
        # Views register their slice / view logics in these collections.
        app_logic.SetSliceLogics(vtkCollection())
        app_logic.SetViewLogics(vtkCollection())
        app_logic.SetModuleLogic("Colors", app_logic.GetColorLogic())
        # Axial/Sagittal/Coronal presets that slice nodes look up by name.
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
        return cls(scene, app_logic, **_ensure_logics(scene, app_logic))

    @classmethod
    def from_slicer(cls):
        """Desktop 3D Slicer: its scene and its modules' logics."""
        import slicer

        modules = slicer.modules
        logics = {
            "volumes_logic": modules.volumes.logic(),
            "segmentations_logic": modules.segmentations.logic(),
            "markups_logic": modules.markups.logic(),
            "sequences_logic": modules.sequences.logic(),
            "tables_logic": modules.tables.logic(),
            "subject_hierarchy_logic": modules.subjecthierarchy.logic(),
            "colors_logic": modules.colors.logic(),
        }
        return cls(slicer.mrmlScene, slicer.app.applicationLogic(), **logics)

    @classmethod
    def from_trame_app(cls, slicer_app):
        """A trame-slicer ``SlicerApp``; registers the logics it lacks (sequences, tables)."""
        scene, app_logic = slicer_app.scene, slicer_app.app_logic
        return cls(scene, app_logic, **_ensure_logics(scene, app_logic))

    # -- helpers ------------------------------------------------------------

    def clear(self):
        """Remove every data node (as Slicer's "Close scene"), keep singletons and logics."""
        self.scene.Clear(0)

    def nodes(self, class_name="vtkMRMLNode"):
        """All nodes of ``class_name`` (subclasses included), in scene order."""
        collection = self.scene.GetNodesByClass(class_name)
        return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]

    def io_logics(self):
        """Remote-IO + data-IO logics with a cache folder: what ``ReadFromMRB`` needs.

        Desktop Slicer has them already; a headless scene gets them on first use.
        """
        if self._io_logics is None:
            import slicer

            if self.scene.GetCacheManager() is not None and self.scene.GetDataIOManager() is not None:
                self._io_logics = ()
                return self._io_logics
            self._cache_dir = tempfile.TemporaryDirectory(prefix="spineai-mrml-cache-")
            remote_io = slicer.vtkMRMLRemoteIOLogic()
            remote_io.SetMRMLScene(self.scene)
            remote_io.SetMRMLApplicationLogic(self.app_logic)
            remote_io.GetCacheManager().SetRemoteCacheDirectory(self._cache_dir.name)
            data_io = slicer.vtkDataIOManagerLogic()
            data_io.SetMRMLScene(self.scene)
            data_io.SetMRMLApplicationLogic(self.app_logic)
            data_io.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
            remote_io.AddDataIOToScene()
            self._io_logics = (remote_io, data_io)  # keep them alive with the context
        return self._io_logics


def _ensure_logics(scene, app_logic):
    """Each logic of ``_LOGICS``: the one already registered, or a new registered one."""
    import slicer

    logics = {}
    for attribute, (name, class_name) in _LOGICS.items():
        logic = app_logic.GetModuleLogic(name)
        if logic is None:
            logic = getattr(slicer, class_name)()
            # Application logic first: some logics look it up when the scene is set.
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(scene)
            app_logic.SetModuleLogic(name, logic)
        logics[attribute] = logic
    return logics
